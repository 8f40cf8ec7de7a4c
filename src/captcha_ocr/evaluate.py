"""Step 4, evaluate: score the trained model on the test split.

Writes the metrics DVC and MLflow both show (same names, same numbers), the
per-character confusion, every wrong prediction, a grid of sample predictions,
the training curves, and the run report (one HTML page with all of it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import mlflow
import pandas as pd

from captcha_ocr import tracking
from captcha_ocr.config import EvaluateParams, load_params
from captcha_ocr.files import write_json, write_with
from captcha_ocr.metrics import character_confusion, character_error_rate, exact_match
from captcha_ocr.model import predict_texts
from captcha_ocr.plots import prediction_grid, training_curves
from captcha_ocr.preprocess import REPORT_PATH as DATA_REPORT_PATH
from captcha_ocr.preprocess import SPLITS_DIR, VOCABULARY_PATH, load_split
from captcha_ocr.report import REPORT_PATH, write_run_report
from captcha_ocr.train import HISTORY_PATH, MODEL_PATH, RUN_PATH
from captcha_ocr.vocabulary import Vocabulary

REPORTS = Path("reports")
METRICS_PATH = REPORTS / "metrics.json"
ERRORS_PATH = REPORTS / "test_errors.csv"
CONFUSION_PATH = REPORTS / "char_confusion.csv"
GRID_PATH = REPORTS / "test_predictions.png"
CURVES_PATH = REPORTS / "training_curves.png"


def evaluate(params: EvaluateParams) -> dict[str, float]:
    vocabulary = Vocabulary.load(VOCABULARY_PATH)
    model = keras.saving.load_model(MODEL_PATH, safe_mode=True)
    images = load_split("test")["images"]
    test = pd.read_csv(SPLITS_DIR / "test.csv", dtype=str)
    truths = test["label"].tolist()
    predicted, confidence = predict_texts(model, images, vocabulary)

    metrics = {
        "test_exact_match": exact_match(truths, predicted),
        "test_cer": character_error_rate(truths, predicted),
        "test_samples": len(truths),
        "test_errors": sum(t != p for t, p in zip(truths, predicted, strict=True)),
    }
    write_json(METRICS_PATH, metrics)

    results = test.assign(predicted=predicted, confidence=confidence.round(4))
    errors = results[results["label"] != results["predicted"]]
    write_with(ERRORS_PATH, lambda p: errors.to_csv(p, index=False))
    confusion = pd.DataFrame(
        [
            {"actual": t, "predicted": p, "count": n}
            for (t, p), n in sorted(character_confusion(truths, predicted).items())
        ]
    )
    # DVC's confusion template counts rows, so write one row per aligned pair.
    pairs = confusion.loc[confusion.index.repeat(confusion["count"]), ["actual", "predicted"]]
    write_with(CONFUSION_PATH, lambda p: pairs.to_csv(p, index=False))

    # The grid leads with the mistakes: they are what a reader wants to see.
    order = list(errors.index) + [i for i in results.index if i not in set(errors.index)]
    shown = order[: params.sample_grid]
    prediction_grid(
        images[shown], [truths[i] for i in shown], [predicted[i] for i in shown], GRID_PATH
    )
    history = pd.read_csv(HISTORY_PATH)
    training_curves(history, CURVES_PATH)

    run = json.loads(RUN_PATH.read_text())
    write_run_report(
        REPORT_PATH,
        metrics=metrics,
        results=results,
        images=images,
        history=history,
        data_report=json.loads(DATA_REPORT_PATH.read_text()),
        run={
            "model": str(MODEL_PATH),
            "MLflow run": run["run_id"],
            "MLflow store": run["tracking_uri"],
        },
    )

    with tracking.resume_run(RUN_PATH):
        mlflow.log_metrics(metrics)
        for path in (
            METRICS_PATH,
            ERRORS_PATH,
            CONFUSION_PATH,
            GRID_PATH,
            CURVES_PATH,
            REPORT_PATH,
        ):
            mlflow.log_artifact(str(path), "reports")
    print(
        f"evaluate: test exact match {metrics['test_exact_match']:.4f}, "
        f"CER {metrics['test_cer']:.4f} on {len(truths)} images "
        f"({metrics['test_errors']} wrong, listed in {ERRORS_PATH}); report: {REPORT_PATH}"
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr evaluate", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    evaluate(load_params(args.params).evaluate)
