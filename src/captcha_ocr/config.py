"""Typed parameters: one section of params.yaml per pipeline step.

params.yaml is read with PyYAML and checked here, so a typo or a wrong type
fails at the start of a step with the name of the key, not an hour into training.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from captcha_ocr.errors import CaptchaOcrError

UPSTREAM_URL = "https://github.com/AakashKumarNain/CaptchaCracker/raw/master/captcha_images_v2.zip"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestParams(Section):
    # A param, so DVC reruns ingest when it changes and dvc.lock records it.
    source: str = UPSTREAM_URL
    sha256: str | None = Field(
        default=None, description="expected digest of the zip; null accepts any"
    )
    # A DVC repository (URL or path) in which ``source`` is a tracked path, read
    # at ``rev`` (a tag, branch or commit; null: the default branch).
    repo: str | None = None
    rev: str | None = None

    @field_validator("source")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        # An empty path is the current folder: the project itself would be ingested.
        if not value.strip():
            raise ValueError("is empty: set it to the URL, zip or folder of your captchas")
        return value


# Bounds that keep preprocess's arrays in memory: each image is height x width
# bytes and each label max_label_length int32s, for every file. Captchas are
# 200x50 with 5 characters; these admit images 100x larger and 64-character labels.
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = 1_000_000
MAX_LABEL_LENGTH = 64

# ``auto``: read from the training split's images and labels (preprocess
# records what it chose in data/vocabulary.json and reports/data_report.json).
AUTO: Literal["auto"] = "auto"
Side = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]
Length = Annotated[int, Field(ge=1, le=MAX_LABEL_LENGTH)]


class PreprocessParams(Section):
    image_height: Side | Literal["auto"] = AUTO
    image_width: Side | Literal["auto"] = AUTO
    # 1: grey, 3: colour; auto: colour when the training images are.
    channels: Literal["auto", 1, 3] = AUTO
    # An image of another size: resized to fit (aspect ratio kept, padded with
    # its border colour) or rejected.
    wrong_size: Literal["reject", "resize"] = "resize"
    # The characters labels may hold; auto: those of the training labels.
    allowed_chars: str = Field(AUTO, min_length=1)
    min_label_length: Length | Literal["auto"] = AUTO
    max_label_length: Length | Literal["auto"] = AUTO
    max_rejected_fraction: float = Field(0.05, ge=0, le=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    limit: int | None = Field(
        default=None, gt=0, description="use only this many images (quick runs, tests)"
    )

    @field_validator("allowed_chars")
    @classmethod
    def _composed(cls, chars: str) -> str:
        # Labels are NFC (steps/labels.py): "e" and a combining accent typed here is "é".
        return unicodedata.normalize("NFC", chars)

    @model_validator(mode="after")
    def _check(self) -> PreprocessParams:
        low, high = self.min_label_length, self.max_label_length
        if isinstance(low, int) and isinstance(high, int) and low > high:
            raise ValueError("min_label_length is larger than max_label_length")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction leaves nothing to train on")
        height, width = self.image_height, self.image_width
        if isinstance(height, int) and isinstance(width, int) and height * width > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"image_height x image_width is {height * width} pixels, limit {MAX_IMAGE_PIXELS}"
            )
        return self


# The sections below refuse .inf and .nan themselves; load_params refuses them
# in every section, naming the key.
FINITE = ConfigDict(allow_inf_nan=False)
# A layer size: zero channels or units build no network.
Size = Annotated[int, Field(ge=1)]


class TrainParams(Section):
    # Defaults are the project's recipe, the same values as params.yaml (a test
    # keeps them equal); the Keras example's recipe is bench/reference.py.
    model_config = FINITE

    seed: int = 1337
    # "auto": about target_steps optimizer updates, whatever the set's size
    # (core/recipe.py, epochs_for): 10 to 200 epochs.
    epochs: Size | Literal["auto"] = "auto"
    target_steps: int = Field(6000, ge=1, le=1_000_000)
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    warmup_epochs: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    # Epochs without a better val_loss before training stops; counted only once
    # the model reads (val CER below 0.5). "auto": a quarter of the epochs, 5 to 20.
    patience: Size | Literal["auto"] = "auto"
    # Training images only, redrawn every epoch once the model reads (core/augment.py).
    augment: bool = True
    augment_rotate: float = Field(3.0, ge=0, le=30, description="degrees, either way")
    augment_shear: float = Field(0.15, ge=0, le=1, description="horizontal shear factor")
    augment_shift: float = Field(0.03, ge=0, le=0.25, description="of width and height")
    augment_scale: float = Field(0.05, ge=0, le=0.5, description="zoom in or out by up to")
    augment_warp: float = Field(0.03, ge=0, le=0.2, description="perspective tilt")
    # Narrow each training image by a random 0 to this fraction, keeping its
    # height and label: crowded characters, the case small front ends misread.
    augment_squeeze: float = Field(0.0, ge=0, lt=1)
    augment_contrast: float = Field(0.3, ge=0, lt=1, description="contrast x (1 +- this)")
    augment_noise: float = Field(8.0, ge=0, le=64, description="Gaussian noise sigma, 0-255 units")
    augment_blur: float = Field(0.5, ge=0, le=1, description="share of a 3x3 blur mixed in")
    conv_filters: list[Size] = Field(default_factory=lambda: [32, 64], min_length=1)
    # Max-pool (height, width) after each conv block; width pooling sets the
    # number of time steps the sequence layers and CTC see (200 / 2 / 2 = 50).
    conv_pool: list[tuple[int, int]] = Field(default_factory=lambda: [(2, 2), (2, 2)])
    # Conv stride (height, width) per block, null for 1 everywhere. A stride of
    # 2 in place of a 2x2 pool computes a quarter of the outputs; pool (1, 1)
    # then skips the pooling.
    conv_strides: list[tuple[int, int]] | None = None
    batch_norm: bool = True
    # Depthwise-separable convolutions after the first block: about 1/8 of the
    # multiply-adds of a full 3x3 convolution from 32 to 64 channels.
    conv_separable: bool = False
    dense_units: int = Field(128, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    # What reads the sequence of columns: a stack of Conv1D layers, or one
    # bidirectional RNN per entry of sequence_units (the example: two BiLSTMs).
    sequence: Literal["conv", "lstm", "gru"] = "conv"
    # Conv1D channels, or RNN units per direction, one entry per layer.
    sequence_units: list[Size] = Field(default_factory=lambda: [128, 128, 128], min_length=1)
    sequence_kernel: int = Field(5, ge=1, description="conv: columns each Conv1D layer sees")
    # conv: space the kernel's taps 1, 2, 4, ... columns apart, layer by layer,
    # so three layers of 3 taps see 15 columns.
    sequence_dilate: bool = False
    sequence_dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("epochs", "patience", mode="before")
    @classmethod
    def _count_or_auto(cls, value: object) -> object:
        # One plain message, not one per member of the union. Whole floats (1.0)
        # and digit strings pass as ints, as for any int key: Kubeflow hands
        # each section over as JSON, where 1 may come back as 1.0.
        if value == "auto":
            return value
        whole_float = isinstance(value, float) and value.is_integer()
        digits = isinstance(value, str) and value.strip().isdigit()
        number = int(value) if whole_float or digits else value  # type: ignore[call-overload]
        if type(number) is int and number >= 1:
            return number
        raise ValueError(f"{value!r} is neither a whole number of at least 1 nor 'auto'")

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if len(self.conv_pool) != len(self.conv_filters):
            raise ValueError("conv_pool needs one (height, width) pair per conv_filters entry")
        if self.conv_strides is not None and len(self.conv_strides) != len(self.conv_filters):
            raise ValueError("conv_strides needs one (height, width) pair per conv_filters entry")
        if any(n < 1 for pair in self.conv_pool + (self.conv_strides or []) for n in pair):
            raise ValueError("conv_pool and conv_strides sizes must be at least 1")
        return self


class EvaluateParams(Section):
    model_config = FINITE

    sample_grid: int = Field(16, ge=1, description="test images shown in the PNG grid")


# Registered model names go into MLflow search filters and models:/ URIs,
# where a quote or a space would change their meaning.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ExportParams(Section):
    model_config = FINITE

    model_name: str = "captcha-ocr"
    # Also write captcha_network_int8.onnx, quantized on this many training
    # images; it must read right every test captcha the reader reads right.
    int8: bool = True
    calibration_images: int = Field(256, ge=1)

    @field_validator("model_name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a usable registered model name: up to 100 letters, "
                "digits, '.', '_' or '-', starting with a letter or digit"
            )
        return name


class PromoteParams(Section):
    model_config = FINITE

    # The first champion must read at least this share of test captchas whole.
    min_exact_match: float = Field(0.95, ge=0, le=1)
    # A challenger must beat the champion's exact match by more than this
    # (or tie it with a lower CER) to take its place.
    min_gain: float = Field(0.0, ge=0, le=1)


class Params(Section):
    ingest: IngestParams = IngestParams()
    preprocess: PreprocessParams = PreprocessParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    promote: PromoteParams = PromoteParams()

    @model_validator(mode="after")
    def _network_fits_the_images(self) -> Params:
        """The conv blocks leave at least one row and enough columns for the labels.

        Checked here, not by Keras an hour in: a pool larger than the feature map
        fails to build ("output size would be zero"), and too few columns (CTC time
        steps) for the longest label make the loss infinite. Sizes and lengths
        set to ``auto`` are known only after preprocess: train checks them then.
        """
        p = self.preprocess
        sizes = (p.image_height, p.image_width, p.max_label_length)
        if all(isinstance(n, int) for n in sizes):
            check_network_fits(self.train, *sizes)  # type: ignore[arg-type]
        return self

    def flat(self, sections: tuple[str, ...] | None = None) -> dict[str, object]:
        """``section.key`` -> value, the way MLflow shows params (all sections by default)."""
        return {
            f"{section}.{key}": value
            for section, values in self.model_dump().items()
            if sections is None or section in sections
            for key, value in values.items()
        }


def check_network_fits(t: TrainParams, image_height: int, image_width: int, max_label: int) -> None:
    """ValueError naming the keys when ``t``'s conv blocks cannot read such images and labels."""
    height, width = image_height, image_width
    strides = t.conv_strides or [(1, 1)] * len(t.conv_filters)
    for block, ((sh, sw), (ph, pw)) in enumerate(zip(strides, t.conv_pool, strict=True), 1):
        # Convolutions pad to "same" (a stride rounds up); pools drop the remainder.
        height, width = math.ceil(height / sh) // ph, math.ceil(width / sw) // pw
        if not (height and width):
            raise ValueError(
                f"train.conv_strides and train.conv_pool leave nothing of the "
                f"{image_height}x{image_width} image (preprocess.image_height x "
                f"preprocess.image_width) after conv block {block} "
                f"(stride {sh}x{sw}, pool {ph}x{pw})"
            )
    # CTC needs a blank between two equal characters: up to 2n - 1 steps for n.
    needed = 2 * max_label - 1
    if width < needed:
        raise ValueError(
            f"train.conv_strides and train.conv_pool leave {width} time steps of the "
            f"{image_width} columns (preprocess.image_width); "
            f"preprocess.max_label_length {max_label} needs at least {needed}"
        )


# The sections a trained model is made from: its MLflow run logs these as params.
# Later sections (evaluate, export, promote) can change without retraining, so
# they go to the registered version's `params` tag instead.
MODEL_SECTIONS = ("ingest", "preprocess", "train")


class ParamsError(CaptchaOcrError):
    pass


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return validate_params(raw, str(path))


def validate_params(raw: object, where: str) -> Params:
    """params.yaml as read, checked; the ParamsError starts with ``where`` and names each key."""
    problems = [f"{key}: {value} is not a finite number" for key, value in _non_finite(raw)]
    if problems:
        raise ParamsError(f"{where}: {'; '.join(problems)}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        # A key that takes a number or ``auto`` fails both ways: one line for it.
        found: dict[str, list[str]] = {}
        for e in err.errors():
            key, message = _problem(e)
            found.setdefault(key, []).append(message)
        lines = [f"{k}: {' or '.join(ms)}" if k else " ".join(ms) for k, ms in found.items()]
        raise ParamsError(f"{where}: {'; '.join(lines)}") from None


def _problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """A pydantic error as (``section.key``, what is wrong); cross-section checks name their own."""
    loc = [str(p) for p in error["loc"]]
    # Pydantic names the branch of a union that failed (``constrained-int``, ``literal['auto']``).
    key = ".".join(p for p in loc if not p.startswith(("constrained-", "literal[")))
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    return key, message


def _non_finite(value: object, key: str = "") -> Iterator[tuple[str, float]]:
    """(``section.key``, value) for every .inf and .nan, however deep in lists."""
    if isinstance(value, float) and not math.isfinite(value):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _non_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _non_finite(item, key)
