"""The run report: one self-contained HTML page, every wrong prediction with its image."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.metrics import character_error_rate, exact_match
from captcha_ocr.reporting.run_report import write_run_report
from captcha_ocr.steps.evaluate import scores


class Page(HTMLParser):
    """Collects what a self-contained page must not have and the images it has."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []
        self.figures = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "figure":
            self.figures += 1
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("data:"):
                self.external.append(f"{tag} {key}={attrs[key]}")


def png_pixels(src: str) -> np.ndarray:
    data = base64.b64decode(src.removeprefix("data:image/png;base64,"))
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def run(captcha_pngs):
    labels = list(captcha_pngs)[:8]
    images = np.stack([decode_image(captcha_pngs[k], 50, 200) for k in labels])
    # Two misreads: a substitution and a dropped character.
    predicted = [labels[0][:-1] + "a", labels[1][:-1]] + labels[2:]
    results = pd.DataFrame(
        {
            "file": [f"{k}.png" for k in labels],
            "label": labels,
            "predicted": predicted,
            "confidence": np.linspace(0.1, 0.9, len(labels)),
        }
    )
    metrics = {
        "test_exact_match": exact_match(labels, predicted),
        "test_cer": character_error_rate(labels, predicted),
        "test_samples": len(labels),
        "test_errors": 2,
    }
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [16.0, 9.0, 2.0],
            "val_loss": [15.0, 8.0, 3.0],
            "val_exact_match": [0.0, 0.4, 0.75],
            "val_cer": [1.0, 0.3, 0.05],
        }
    )
    data_report = {
        "files": 9,
        "accepted": 8,
        "rejected_count": 1,
        "rejected": [{"file": "<b>bad</b>.png", "reason": "not a readable image"}],
        "vocabulary": "2345678bcdefgmnpwxy",
        "label_lengths": {"5": 8},
        "character_counts": {"2": 3, "b": 5},
        "splits": {"train": 6, "val": 1, "test": 1},
    }
    return results, images, metrics, history, data_report


def test_report_is_self_contained_and_shows_every_wrong_prediction(tmp_path, run):
    results, images, metrics, history, data_report = run
    path = write_run_report(
        tmp_path / "report.html",
        metrics=metrics,
        results=results,
        images=images,
        history=history,
        data_report=data_report,
        run={"MLflow run": "abc123"},
    )
    text = path.read_text()
    page = Page(text)
    assert page.external == []
    assert "<script" not in text

    # One figure per wrong prediction, each with the very pixels of its captcha.
    assert page.figures == 2
    wrong_images = [img for img in page.images if img["alt"] in set(results["label"][:2])]
    assert len(wrong_images) == 2
    for img in wrong_images:
        index = results.index[results["label"] == img["alt"]][0]
        np.testing.assert_array_equal(png_pixels(img["src"]), images[index])
    # The training curves are an embedded PNG too.
    assert any(img["alt"] == "training curves" for img in page.images)

    assert "Wrong predictions (2 of 8)" in text
    assert f"{metrics['test_exact_match']:.3f}" in text and "6 of 8" in text
    assert "abc123" in text
    # The substitution is named in the confusion summary; file names are escaped.
    label = results["label"][0]
    assert f"{label[-1]} read as a (1x)" in text
    assert "&lt;b&gt;bad&lt;/b&gt;.png" in text and "<b>bad</b>" not in text


def test_report_without_mistakes_or_history(tmp_path, run):
    results, images, metrics, _, _ = run
    right = results.assign(predicted=results["label"])
    metrics = metrics | {"test_exact_match": 1.0, "test_cer": 0.0, "test_errors": 0}
    path = write_run_report(tmp_path / "r.html", metrics=metrics, results=right, images=images)
    text = path.read_text()
    assert "All 8 test captchas were read right." in text
    assert "No character was misread." in text
    assert "no training history given" in text
    assert Page(text).figures == 0


def test_report_refuses_results_that_do_not_match_the_images(tmp_path, run):
    results, images, metrics, _, _ = run
    with pytest.raises(ValueError, match="8 result rows but 7 images"):
        write_run_report(tmp_path / "r.html", metrics=metrics, results=results, images=images[:7])
    with pytest.raises(ValueError, match="predicted"):
        write_run_report(
            tmp_path / "r.html",
            metrics=metrics,
            results=results.drop(columns="predicted"),
            images=images,
        )
    assert not (tmp_path / "r.html").exists()


def test_report_shows_the_interval_and_each_label_length(tmp_path, run):
    results, images, _, history, _ = run
    truths = results["label"].tolist()
    # Two lengths: the second captcha's label is one character shorter.
    truths[1] = truths[1][:-1]
    predicted = results["predicted"].tolist()
    metrics = scores(truths, predicted)
    low, high = metrics["test_exact_match_ci_low"], metrics["test_exact_match_ci_high"]
    assert low < metrics["test_exact_match"] < high
    assert metrics["test_exact_match_by_length"]["4"]["samples"] == 1
    text = write_run_report(
        tmp_path / "r.html",
        metrics=metrics,
        results=results.assign(label=truths),
        images=images,
        history=history,
    ).read_text()
    assert f"95% CI {low:.3f}-{high:.3f}" in text
    assert "Exact match per label length" in text
    assert "reads nothing yet" not in text  # this history left the plateau at epoch 2


def test_report_says_plainly_when_training_never_left_the_plateau(tmp_path, run):
    results, images, metrics, history, _ = run
    stuck = history.assign(val_cer=[1.0, 0.98, 0.9], val_exact_match=0.0)
    text = write_run_report(
        tmp_path / "r.html", metrics=metrics, results=results, images=images, history=stuck
    ).read_text()
    assert "the model reads nothing yet: the loss stayed on its plateau" in text
    assert "train.learning_rate" in text
