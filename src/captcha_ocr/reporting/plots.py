"""Pictures for people: sample predictions and training curves."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from captcha_ocr.files import write_with  # noqa: E402


def prediction_grid(
    images: np.ndarray, truths: list[str], predictions: list[str], path: Path, columns: int = 4
) -> None:
    """Images titled with the prediction, like the Keras example; wrong ones in red."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 3.2, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, predicted in zip(axes.flat, images, truths, predictions, strict=False):
        ax.imshow(image, cmap="gray")
        wrong = predicted != truth
        shown = predicted or "(nothing)"
        title = f"{shown}  (true {truth})" if wrong else shown
        ax.set_title(title, color="red" if wrong else "black", fontsize=10)
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, dpi=80))
    plt.close(fig)


def training_curves(history: pd.DataFrame, path: Path) -> None:
    fig = training_curves_figure(history)
    write_with(path, lambda p: fig.savefig(p, dpi=80))
    plt.close(fig)


def training_curves_figure(history: pd.DataFrame) -> plt.Figure:
    """Loss (log scale) and validation reading per epoch, side by side."""
    fig, (loss_ax, read_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss_ax.plot(history["epoch"], history["loss"], label="train loss")
    loss_ax.plot(history["epoch"], history["val_loss"], label="val loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("CTC loss")
    loss_ax.set_yscale("log")
    loss_ax.legend()
    read_ax.plot(history["epoch"], history["val_exact_match"], label="val exact match")
    read_ax.plot(history["epoch"], history["val_cer"], label="val CER")
    read_ax.set_xlabel("epoch")
    read_ax.set_ylim(0, 1)
    read_ax.legend()
    fig.tight_layout()
    return fig


def figure_png(fig: plt.Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (and closed), for pages that embed their images."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
