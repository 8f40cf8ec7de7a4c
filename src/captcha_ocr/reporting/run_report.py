"""The run report: one self-contained HTML page about a trained model.

Data summary, training curves, test metrics, character confusion and every
wrong test prediction with its image. Styles and images are inline (PNG data
URIs), so the file opens offline, from an MLflow artifact view or a pipeline
UI, with nothing beside it. The evaluate step writes it to ``paths.RUN_REPORT``;
anything else that has the same results can call ``write_run_report``.
"""

from __future__ import annotations

import base64
import datetime
import io
from collections import Counter
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from captcha_ocr.core.metrics import GAP, align, character_confusion, plateau_note
from captcha_ocr.files import write_text
from captcha_ocr.reporting.plots import figure_png, training_curves_figure

RESULT_COLUMNS = ("file", "label", "predicted", "confidence")
MAX_REJECTED_ROWS = 100

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #1d232a; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d8dee4; }
.meta { color: #57606a; } .meta code { font-size: 13px; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #d8dee4; border-radius: 8px; padding: .7rem 1.1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.6rem; }
table { border-collapse: collapse; margin: .6rem 0; }
td, th { border: 1px solid #d8dee4; padding: .2rem .5rem; text-align: right; }
th { background: #f6f8fa; }
table.confusion td, table.confusion th { padding: .1rem .3rem; min-width: 1.4rem;
       text-align: center; font: 13px ui-monospace, monospace; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
           gap: .8rem; }
figure { margin: 0; border: 1px solid #d8dee4; border-radius: 6px; padding: .4rem; }
figure img { width: 100%; image-rendering: pixelated; }
figcaption { font: 14px ui-monospace, monospace; }
.bad { color: #cf222e; font-weight: bold; } .muted { color: #57606a; }
.warning { border: 2px solid #cf222e; border-radius: 8px; padding: .7rem 1.1rem;
           background: #fff5f5; }
"""


def write_run_report(
    path: Path,
    *,
    metrics: dict,
    results: pd.DataFrame,
    images: np.ndarray,
    history: pd.DataFrame | None = None,
    data_report: dict | None = None,
    run: dict[str, str] | None = None,
) -> Path:
    """Write the report and return its path.

    ``results`` has one row per test image (columns ``file``, ``label``,
    ``predicted``, ``confidence``) in the order of ``images`` (N, H, W) uint8.
    ``run`` is shown as given (for example the MLflow run id and store).
    """
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results lack the columns {missing}")
    if len(results) != len(images):
        raise ValueError(f"{len(results)} result rows but {len(images)} images")
    results = results.reset_index(drop=True)
    sections = [
        _header(run or {}),
        _plateau_section(history),
        _metrics_section(metrics, history),
        _data_section(data_report),
        _curves_section(history),
        _confusion_section(results),
        _errors_section(results, images),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        "<title>captcha-ocr run report</title>\n"
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    write_text(path, page)
    return Path(path)


def _header(run: dict[str, str]) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    facts = "".join(f"<br>{escape(k)}: <code>{escape(str(v))}</code>" for k, v in run.items())
    return f'<h1>captcha-ocr run report</h1>\n<p class="meta">written {when}{facts}</p>'


def _plateau_section(history: pd.DataFrame | None) -> str:
    """A warning first thing on the page when training never left the plateau."""
    if history is None or "val_cer" not in history or not len(history):
        return ""
    note = plateau_note(history["val_cer"].tolist())
    if not note:
        return ""
    return f'<p class="warning"><b>Training did not finish its job:</b> {escape(note)}.</p>'


def _metrics_section(metrics: dict, history: pd.DataFrame | None) -> str:
    samples = int(metrics.get("test_samples", 0))
    errors = int(metrics.get("test_errors", 0))
    interval = ""
    if "test_exact_match_ci_low" in metrics:
        interval = (
            f"; 95% CI {metrics['test_exact_match_ci_low']:.3f}-"
            f"{metrics['test_exact_match_ci_high']:.3f}"
        )
    cards = [
        (
            "test exact match",
            f"{metrics['test_exact_match']:.3f}",
            f"{samples - errors} of {samples}{interval}",
        ),
        ("test CER", f"{metrics['test_cer']:.4f}", "edits per true character"),
        ("wrong captchas", str(errors), "listed below"),
    ]
    if history is not None and len(history):
        best = history.loc[history["val_loss"].idxmin()]
        cards.append(
            (
                "best epoch",
                str(int(best["epoch"])),
                f"of {len(history)}; val exact match {best['val_exact_match']:.3f}",
            )
        )
    html = "".join(
        f'<div class="card">{escape(name)}<b>{escape(value)}</b>'
        f'<span class="muted">{escape(note)}</span></div>'
        for name, value, note in cards
    )
    html = f'<h2>Test metrics</h2>\n<div class="cards">{html}</div>'
    by_length = metrics.get("test_exact_match_by_length") or {}
    if by_length:
        rows = [
            [
                length,
                v["samples"],
                f"{v['exact_match']:.3f}",
                f"{v['ci_low']:.3f}-{v['ci_high']:.3f}",
            ]
            for length, v in by_length.items()
        ]
        html += "<p>Exact match per label length (Wilson 95% interval):</p>\n" + _table(
            ["characters", "captchas", "exact match", "95% CI"], rows
        )
    return html


def _data_section(report: dict | None) -> str:
    if not report:
        return "<h2>Data</h2>\n<p class=muted>no data report given</p>"
    splits = report.get("splits", {})
    rows = [
        ("image files", report.get("files", "")),
        ("accepted", report.get("accepted", "")),
        ("rejected", report.get("rejected_count", "")),
        *((f"{name} split", count) for name, count in splits.items()),
        ("vocabulary", f"{report.get('vocabulary', '')} ({len(report.get('vocabulary', ''))})"),
        (
            "label lengths",
            ", ".join(f"{k}: {v}" for k, v in report.get("label_lengths", {}).items()),
        ),
    ]
    html = "<h2>Data</h2>\n" + _table(None, [[k, v] for k, v in rows])
    counts = report.get("character_counts", {})
    if counts:
        html += "<p>Character counts in the accepted labels:</p>\n" + _table(
            list(counts), [list(counts.values())]
        )
    rejected = report.get("rejected", [])
    if rejected:
        shown = rejected[:MAX_REJECTED_ROWS]
        more = len(rejected) - len(shown)
        html += "<p>Rejected files and why:</p>\n" + _table(
            ["file", "reason"], [[r.get("file", ""), r.get("reason", "")] for r in shown]
        )
        if more:
            html += f"<p class=muted>and {more} more in reports/data_report.json</p>"
    return html


def _curves_section(history: pd.DataFrame | None) -> str:
    if history is None or not len(history):
        return "<h2>Training curves</h2>\n<p class=muted>no training history given</p>"
    image = _img(figure_png(training_curves_figure(history)), "training curves")
    numbers = history.round(4)
    table = _table(list(numbers.columns), numbers.values.tolist())
    return (
        f"<h2>Training curves</h2>\n{image}\n"
        f"<details><summary>every epoch</summary>{table}</details>"
    )


def _confusion_section(results: pd.DataFrame) -> str:
    truths, predicted = results["label"].tolist(), results["predicted"].tolist()
    counts = character_confusion(truths, predicted)
    characters = sorted({c for pair in counts for c in pair} - {GAP}) + [GAP]
    wrong = Counter({pair: n for pair, n in counts.items() if pair[0] != pair[1]})
    html = "<h2>Character confusion</h2>\n"
    if wrong:
        top = ", ".join(f"{t} read as {p} ({n}x)" for (t, p), n in wrong.most_common(10))
        html += (
            f"<p>Most frequent mistakes: {escape(top)}. {GAP} is a missing or extra character.</p>"
        )
    else:
        html += "<p>No character was misread.</p>"
    peak = max(counts.values(), default=1)
    head = "<tr><th>true \\ read</th>" + "".join(f"<th>{escape(c)}</th>" for c in characters)
    body = []
    for truth in characters:
        cells = []
        for read in characters:
            n = counts.get((truth, read), 0)
            colour = "46,160,67" if truth == read else "207,34,46"
            shade = f' style="background: rgba({colour},{0.15 + 0.85 * n / peak:.2f})"' if n else ""
            cells.append(f"<td{shade}>{n or ''}</td>")
        body.append(f"<tr><th>{escape(truth)}</th>{''.join(cells)}</tr>")
    return html + f'<table class="confusion">{head}</tr>{"".join(body)}</table>'


def _errors_section(results: pd.DataFrame, images: np.ndarray) -> str:
    wrong = results.index[results["label"] != results["predicted"]]
    title = f"<h2>Wrong predictions ({len(wrong)} of {len(results)})</h2>\n"
    if not len(wrong):
        return title + f"<p>All {len(results)} test captchas were read right.</p>"
    cards = []
    for i in wrong:
        row = results.loc[i]
        cards.append(
            f"<figure>{_img(_png(images[i]), row['label'])}<figcaption>"
            f"read {_marked(row['label'], row['predicted'])}<br>"
            f"true {escape(row['label'])}<br>"
            f'<span class="muted">confidence {float(row["confidence"]):.3f}, '
            f"{escape(str(row['file']))}</span></figcaption></figure>"
        )
    return title + f'<div class="gallery">{"".join(cards)}</div>'


def _marked(truth: str, predicted: str) -> str:
    """The prediction with every character that is not the true one in red."""
    if not predicted:
        return '<span class="bad">(nothing)</span>'
    out = []
    for want, got in align(truth, predicted):
        if got == GAP:
            continue  # a missed character has nothing to show in the prediction
        out.append(escape(got) if want == got else f'<span class="bad">{escape(got)}</span>')
    return "".join(out)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list | None, rows: list[list]) -> str:
    top = "<tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in head) + "</tr>" if head else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table>{top}{body}</table>"
