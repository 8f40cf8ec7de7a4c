"""Step 5, export: the reader model, image in and text out, under models/.

Four formats: ``captcha_reader.keras`` (Keras, Python), ``saved_model/``
(TensorFlow SavedModel for TF Serving, text decoded in the graph),
``captcha_network.onnx`` with ``vocabulary.json`` (any ONNX runtime; decoding
in NumPy, see ``runtimes.OnnxReader``) and, with ``export.int8``,
``captcha_network_int8.onnx``: the same network quantized to int8 on training
images, the fastest to read under OpenVINO (``runtimes.OpenVinoReader``).

Every check reads the validation split: the test split is evaluate's alone.
The reader and the ONNX network must read it exactly as the trained network
does, or nothing is shipped. The int8 copy is a speed option, never a reason
to fail: when it loses a validation captcha the float reader reads (or cannot
be made), export ships without it, says why, and tags the version
``int8: dropped`` with ``int8.reason``.

The reader is the trained network plus CTC decoding, saved as one ``.keras``
file that carries its vocabulary.

The reader is then registered in the MLflow Model Registry as a pyfunc model
(base64 images in, text and confidence out), tagged with its test metrics, the
dataset digest, the test split digest, the git commit and the params. Which
version serves is decided by the promote step.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
from mlflow.entities.model_registry import ModelVersion

from captcha_ocr import paths, tracking
from captcha_ocr.config import Params, load_params
from captcha_ocr.core.model import CaptchaReader, build_reader, export_saved_model, predict_texts
from captcha_ocr.core.runtimes import OnnxReader, OpenVinoReader, export_onnx, quantize_onnx
from captcha_ocr.core.vocabulary import ReadingSpec, Vocabulary
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.files import atomic_dir, atomic_path, read_text_table, write_json
from captcha_ocr.lineage import data_tags
from captcha_ocr.redaction import public_params
from captcha_ocr.steps.preprocess import load_split, split_identity
from captcha_ocr.store import reader_tags, store_id


class ExportError(CaptchaOcrError):
    pass


def export(params: Params) -> Path:
    vocabulary = Vocabulary.load(paths.VOCABULARY)
    model = keras.saving.load_model(paths.TRAINED_MODEL, safe_mode=True)
    spec = ReadingSpec.load(paths.VOCABULARY)
    lengths = (spec.min_label_length, spec.max_label_length) if spec else None
    reader = CaptchaReader(build_reader(model, vocabulary, lengths))

    images = load_split("val")["images"]
    expected, _ = predict_texts(model, images, vocabulary)
    got, _ = reader.read(images)
    disagree = sum(a != b for a, b in zip(expected, got, strict=True))
    if disagree:
        raise ExportError(
            f"the reader disagrees with the trained network on {disagree} validation images"
        )

    # Everything goes into a new models/export folder that replaces the old one
    # only when every file is checked and the version is registered: a failure
    # at any point leaves the last good export, registered.json included.
    with atomic_dir(paths.EXPORT_DIR) as folder:
        version = write_and_register(folder, params, model, reader, images, got)
    print(f"export: reader saved to {paths.READER} (vocabulary {vocabulary.characters!r})")
    print(f"export: registered as {version.name} version {version.version}")
    return paths.READER


def in_folder(folder: Path, path: Path) -> Path:
    """``path`` (under models/export) inside the staging ``folder``."""
    return folder / path.relative_to(paths.EXPORT_DIR)


def write_and_register(
    folder: Path, params: Params, model, reader: CaptchaReader, images, got: list[str]
) -> ModelVersion:
    vocabulary = reader.vocabulary
    reader.model.save(in_folder(folder, paths.READER))
    export_saved_model(reader.model, in_folder(folder, paths.SAVED_MODEL))
    onnx = in_folder(folder, paths.ONNX_NETWORK)
    export_onnx(model, onnx)
    # With what preprocess chose (size, channels, label lengths): what readers read by.
    vocabulary.save(in_folder(folder, paths.ONNX_VOCABULARY), ReadingSpec.load(paths.VOCABULARY))
    check_agrees("the ONNX model", OnnxReader(onnx, vocabulary).read(images)[0], got)
    int8 = Int8Decision("off", "export.int8 is false")
    if params.export.int8:
        int8 = export_int8(folder, params.export.calibration_images, vocabulary, images, got)
    with tracking.resume_run(paths.MLFLOW_RUN):
        version = publish(folder, params, int8.tags())
    registered = {"name": version.name, "version": str(version.version)}
    # The version number means something only in this store (captcha_ocr.store).
    # The int8 decision goes with it, for `register` to tag a version in another store.
    int8_record = {"store": store_id(), "int8": int8.tags()}
    write_json(in_folder(folder, paths.REGISTERED), registered | int8_record)
    return version


def check_agrees(what: str, texts: list[str], reader_texts: list[str]) -> None:
    disagree = sum(a != b for a, b in zip(texts, reader_texts, strict=True))
    if disagree:
        raise ExportError(f"{what} disagrees with the reader on {disagree} validation images")


@dataclass(frozen=True)
class Int8Decision:
    """Whether the int8 copy ships ("shipped", "dropped" or "off") and why."""

    status: str
    reason: str

    def tags(self) -> dict[str, str]:
        return {"int8": self.status, "int8.reason": self.reason}


def recorded_int8_tags(folder: Path) -> dict[str, str]:
    """The int8 tags export gave its version, as ``registered.json`` records them."""
    recorded = json.loads(in_folder(folder, paths.REGISTERED).read_text()).get("int8")
    if isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items()}
    shipped = in_folder(folder, paths.INT8_NETWORK).exists()
    return Int8Decision("shipped" if shipped else "off", "not recorded by this export").tags()


def decide_int8(files, truths, reader_texts, int8_texts) -> Int8Decision:
    """Ship the int8 copy only if it reads right every validation captcha the reader reads.

    Texts may differ where the reader is wrong too: a barely trained network
    reads noise, and int8 reads slightly different noise.
    """
    lost = lost_captchas(files, truths, reader_texts, int8_texts)
    if lost:
        return Int8Decision(
            "dropped",
            f"it misreads {len(lost)} of {len(files)} validation captchas the float reader "
            f"reads ({', '.join(lost[:5])}); a larger export.calibration_images may keep it",
        )
    differ = sum(a != b for a, b in zip(int8_texts, reader_texts, strict=True))
    same = f"{differ} texts differ, on captchas both misread" if differ else "the same texts"
    return Int8Decision(
        "shipped", f"it reads every validation captcha the float reader reads ({same})"
    )


def export_int8(
    folder: Path, calibration_images: int, vocabulary: Vocabulary, images, reader_texts: list[str]
) -> Int8Decision:
    """Quantize the ONNX network and keep the copy if ``decide_int8`` says so.

    A copy that loses captchas, or that the quantizer or OpenVINO cannot make
    or read, is left out: the float networks ship alone and export goes on.
    """
    val = read_text_table(paths.split_csv("val"))
    calibration = load_split("train")["images"][:calibration_images]
    target = in_folder(folder, paths.INT8_NETWORK)
    try:
        with atomic_path(target) as tmp:
            quantize_onnx(in_folder(folder, paths.ONNX_NETWORK), tmp, calibration)
            int8_texts = OpenVinoReader(tmp, vocabulary).read(images)[0]
            decision = decide_int8(val["file"], val["label"], reader_texts, int8_texts)
            if decision.status != "shipped":
                raise Int8Dropped(decision)  # leaves the atomic write: no file
    except Int8Dropped as dropped:
        decision = dropped.decision
    except Exception as err:  # any quantizer or runtime failure: int8 is optional
        decision = Int8Decision("dropped", f"it could not be made: {type(err).__name__}: {err}")
    if decision.status == "shipped":
        print(f"export: int8 network written ({paths.INT8_NETWORK}): {decision.reason}")
    else:
        print(
            f"export: int8 network NOT shipped, the float networks ship without it: "
            f"{decision.reason}"
        )
    return decision


class Int8Dropped(Exception):
    """Carries a "dropped" decision out of the int8 file's atomic write, discarding it."""

    def __init__(self, decision: Int8Decision):
        super().__init__(decision.reason)
        self.decision = decision


def lost_captchas(files, truths, reader_texts, copy_texts) -> list[str]:
    """The files the reader reads right and a copy of it (int8) reads wrong."""
    rows = zip(files, truths, reader_texts, copy_texts, strict=True)
    return [file for file, truth, theirs, ours in rows if theirs == truth != ours]


def publish(folder: Path, params: Params, int8_tags: dict[str, str]) -> ModelVersion:
    """Log the files of the export ``folder`` to the active MLflow run; register the reader."""
    from captcha_ocr.registry import register_reader

    reader_path = in_folder(folder, paths.READER)
    mlflow.log_artifact(str(reader_path), "export")
    mlflow.log_artifacts(str(in_folder(folder, paths.SAVED_MODEL)), "export/saved_model")
    mlflow.log_artifact(str(in_folder(folder, paths.ONNX_NETWORK)), "export")
    if in_folder(folder, paths.INT8_NETWORK).exists():
        mlflow.log_artifact(str(in_folder(folder, paths.INT8_NETWORK)), "export")
    # The ONNX network gives logits; its vocabulary turns them into text.
    mlflow.log_artifact(str(in_folder(folder, paths.ONNX_VOCABULARY)), "export")
    tags = {
        "dataset_sha256": json.loads(paths.INGEST_INFO.read_text())["sha256"],
        # The test images and labels, not the CSV's bytes: the same images score
        # alike whatever else the file records.
        "test_split_sha256": split_identity("test"),
        "params": json.dumps(public_params(params).model_dump(), sort_keys=True),
        # What dvc.lock records of the data, and a commit that can restore it.
        **data_tags(),
        # Lets any store be asked whether it holds this reader (captcha-ocr register).
        **reader_tags(reader_path),
        # Whether captcha_network_int8.onnx ships, and why (export_int8).
        **int8_tags,
    }
    val = read_text_table(paths.split_csv("val"))
    example_png = (paths.RAW_IMAGES / val["file"][0]).read_bytes()
    metrics = json.loads(paths.METRICS.read_text())
    return register_reader(reader_path, params.export.model_name, metrics, tags, example_png)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr export", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    export(load_params(args.params))
