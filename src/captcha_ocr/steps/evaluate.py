"""Step 4, evaluate: score the trained model on the test split.

Writes the metrics DVC and MLflow both show (same names, same numbers), the
per-character confusion, every wrong prediction, a grid of sample predictions,
the training curves, and the run report (one HTML page with all of it).
"""

from __future__ import annotations

import argparse
import json

import keras
import mlflow
import pandas as pd

from captcha_ocr import paths, tracking
from captcha_ocr.config import EvaluateParams, load_params
from captcha_ocr.core.metrics import (
    character_confusion,
    character_error_rate,
    exact_match,
    exact_match_by_length,
    flat_metrics,
    plateau_note,
    wilson_interval,
)
from captcha_ocr.core.model import predict_texts
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.files import all_or_nothing, read_text_table, write_json, write_with
from captcha_ocr.reporting.plots import prediction_grid, training_curves
from captcha_ocr.reporting.run_report import write_run_report
from captcha_ocr.steps.preprocess import load_split


def evaluate(params: EvaluateParams) -> dict:
    vocabulary = Vocabulary.load(paths.VOCABULARY)
    model = keras.saving.load_model(paths.TRAINED_MODEL, safe_mode=True)
    images = load_split("test")["images"]
    test = read_text_table(paths.SPLITS / "test.csv")
    truths = test["label"].tolist()
    predicted, confidence = predict_texts(model, images, vocabulary)

    metrics = scores(truths, predicted)
    # The six reports move in together: a failure half-way keeps the old ones.
    with all_or_nothing():
        write_json(paths.METRICS, metrics)

        results = test.assign(predicted=predicted, confidence=confidence.round(4))
        errors = results[results["label"] != results["predicted"]]
        write_with(paths.TEST_ERRORS, lambda p: errors.to_csv(p, index=False))
        confusion = pd.DataFrame(
            [
                {"actual": t, "predicted": p, "count": n}
                for (t, p), n in sorted(character_confusion(truths, predicted).items())
            ]
        )
        # DVC's confusion template counts rows, so write one row per aligned pair.
        pairs = confusion.loc[confusion.index.repeat(confusion["count"]), ["actual", "predicted"]]
        write_with(paths.CHAR_CONFUSION, lambda p: pairs.to_csv(p, index=False))

        # The grid leads with the mistakes: they are what a reader wants to see.
        order = list(errors.index) + [i for i in results.index if i not in set(errors.index)]
        shown = order[: params.sample_grid]
        prediction_grid(
            images[shown],
            [truths[i] for i in shown],
            [predicted[i] for i in shown],
            paths.TEST_PREDICTIONS_PNG,
        )
        history = pd.read_csv(paths.TRAIN_HISTORY)
        training_curves(history, paths.TRAINING_CURVES_PNG)

        run = json.loads(paths.MLFLOW_RUN.read_text())
        write_run_report(
            paths.RUN_REPORT,
            metrics=metrics,
            results=results,
            images=images,
            history=history,
            data_report=json.loads(paths.DATA_REPORT.read_text()),
            run={
                "model": str(paths.TRAINED_MODEL),
                "MLflow run": run["run_id"],
                "MLflow store": run["tracking_uri"],
            },
        )

    with tracking.resume_run(paths.MLFLOW_RUN):
        tracking.log_dataset_inputs(tracking.TEST_SPLITS)  # read here, and only here
        mlflow.log_metrics(flat_metrics(metrics))
        for path in (
            paths.METRICS,
            paths.TEST_ERRORS,
            paths.CHAR_CONFUSION,
            paths.TEST_PREDICTIONS_PNG,
            paths.TRAINING_CURVES_PNG,
            paths.RUN_REPORT,
        ):
            mlflow.log_artifact(str(path), "reports")
    by_length = ", ".join(
        f"{length} characters {v['exact_match']:.3f} ({v['samples']})"
        for length, v in metrics["test_exact_match_by_length"].items()
    )
    print(
        f"evaluate: test exact match {metrics['test_exact_match']:.4f} "
        f"(95% CI {metrics['test_exact_match_ci_low']:.3f}-"
        f"{metrics['test_exact_match_ci_high']:.3f}), "
        f"CER {metrics['test_cer']:.4f} on {len(truths)} images "
        f"({metrics['test_errors']} wrong, listed in {paths.TEST_ERRORS}); by length: "
        f"{by_length}; report: {paths.RUN_REPORT}"
    )
    note = plateau_note(history["val_cer"].tolist()) if "val_cer" in history else None
    if note:
        print(f"evaluate: WARNING: {note}")
    return metrics


def scores(truths: list[str], predicted: list[str]) -> dict:
    """reports/metrics.json: exact match with its 95% Wilson interval, per label length too."""
    right = sum(t == p for t, p in zip(truths, predicted, strict=True))
    low, high = wilson_interval(right, len(truths))
    by_length = {}
    for length, (r, n) in exact_match_by_length(truths, predicted).items():
        low_n, high_n = wilson_interval(r, n)
        by_length[str(length)] = {
            "exact_match": r / n,
            "samples": n,
            "ci_low": low_n,
            "ci_high": high_n,
        }
    return {
        "test_exact_match": exact_match(truths, predicted),
        "test_exact_match_ci_low": low,
        "test_exact_match_ci_high": high,
        "test_cer": character_error_rate(truths, predicted),
        "test_samples": len(truths),
        "test_errors": len(truths) - right,
        "test_exact_match_by_length": by_length,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr evaluate", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    evaluate(load_params(args.params).evaluate)
