"""The project's map of files: every path a step reads or writes, in one place.

Paths are relative to the project folder, where ``dvc repro`` runs every step
(a Kubeflow component lays out a scratch folder the same way). ``dvc.yaml``
names the same paths as each stage's outs; ``STEP_OUTPUTS`` below is the list a
Kubeflow component hands on, and a test keeps it equal to ``dvc.yaml``.
"""

from __future__ import annotations

from pathlib import Path

# ingest
RAW_ZIP = Path("data/raw/captcha_images_v2.zip")
RAW_IMAGES = Path("data/raw/images")
INGEST_INFO = Path("data/raw/ingest.json")

# preprocess
SPLITS = Path("data/splits")  # train.csv, val.csv, test.csv: file and label
PREPARED = Path("data/prepared")  # train.npz, val.npz, test.npz: images and label codes
VOCABULARY = Path("data/vocabulary.json")
DATA_REPORT = Path("reports/data_report.json")

# train
TRAIN_DIR = Path("models/train")
TRAINED_MODEL = TRAIN_DIR / "model.keras"
MLFLOW_RUN = TRAIN_DIR / "mlflow_run.json"  # the run that evaluate and export reopen
MLFLOW_UNLOGGED = TRAIN_DIR / "mlflow_unlogged.json"
TRAIN_HISTORY = Path("reports/train_history.csv")
# Not a DVC output: DVC deletes a stage's outputs before it runs, and a killed
# training must find its checkpoints again.
CHECKPOINTS = Path(".checkpoints/train")

# evaluate
METRICS = Path("reports/metrics.json")
TEST_ERRORS = Path("reports/test_errors.csv")
CHAR_CONFUSION = Path("reports/char_confusion.csv")
TEST_PREDICTIONS_PNG = Path("reports/test_predictions.png")
TRAINING_CURVES_PNG = Path("reports/training_curves.png")
RUN_REPORT = Path("reports/run_report.html")

# export
EXPORT_DIR = Path("models/export")
READER = EXPORT_DIR / "captcha_reader.keras"
SAVED_MODEL = EXPORT_DIR / "saved_model"
ONNX_NETWORK = EXPORT_DIR / "captcha_network.onnx"
INT8_NETWORK = EXPORT_DIR / "captcha_network_int8.onnx"
ONNX_VOCABULARY = EXPORT_DIR / "vocabulary.json"
REGISTERED = EXPORT_DIR / "registered.json"  # the version export registered, and where

# register (DVC only): the version the store in use holds of the exported reader
REGISTRY = Path("models/registry.json")

# promote
PROMOTION = Path("reports/promotion.json")


def split_csv(name: str) -> Path:
    return SPLITS / f"{name}.csv"


def split_arrays(name: str) -> Path:
    return PREPARED / f"{name}.npz"


# What each step writes: its outs, metrics and plots in dvc.yaml.
STEP_OUTPUTS: dict[str, tuple[Path, ...]] = {
    "ingest": (RAW_ZIP, RAW_IMAGES, INGEST_INFO),
    "preprocess": (SPLITS, PREPARED, VOCABULARY, DATA_REPORT),
    "train": (TRAIN_DIR, TRAIN_HISTORY),
    "evaluate": (
        METRICS,
        TEST_ERRORS,
        CHAR_CONFUSION,
        TEST_PREDICTIONS_PNG,
        TRAINING_CURVES_PNG,
        RUN_REPORT,
    ),
    "export": (EXPORT_DIR,),
    "register": (REGISTRY,),
    "promote": (PROMOTION,),
}
