"""Training cost and accuracy, the project's default beside the reference, in one run.

    python bench/train_compare.py [--seeds 1337 1 2] [--max-epochs N] [--out DIR]
    python bench/train_compare.py --table-from DIR     # the table of a finished or cut run

Run from the project folder after ``dvc repro preprocess`` (it reads the split
in ``data/prepared``). It trains, on that split:

- the reference: the Keras example's model and recipe (``bench/reference.py``),
  once, with the first seed: at 10-25 minutes a run, its seed spread is not
  worth the machine time;
- the project's default, ``params.yaml``'s ``train:`` section, once per seed.

Every run uses the same loop (``model.fit``, val_loss early stopping with the
best weights restored, the training images reshuffled every epoch), so only
the params differ. After each epoch the run reads the validation split whole;
that reading is left out of the epoch's wall time, since the reference does
not do it. "Time to reach" is read off these per-epoch figures: the first
epoch whose validation exact-match is at least the reference's final one.

Then, for each trained network: test exact-match and CER, exact-match on
validation and test together, images/s at batch 64 and 16 with
``model.predict`` (the example's way), with the network exported to ONNX
under onnxruntime (``OnnxReader``) and with its int8 copy under OpenVINO
(``OpenVinoReader``, quantized on training images as the export step does),
and single-image p50 latencies. Nothing goes to MLflow. Each run's
figures and network are saved in ``--out`` as soon as it ends, so a cut run
still gives a table (``--table-from``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from inference import timed
from reference import REFERENCE_PARAMS, build_reference

from captcha_ocr import paths
from captcha_ocr.config import ExportParams, TrainParams, load_params
from captcha_ocr.core.ctc import greedy_decode
from captcha_ocr.core.metrics import character_error_rate, exact_match
from captcha_ocr.core.model import build_training_model, predict_texts
from captcha_ocr.core.recipe import (
    ValidationReading,
    epochs_for,
    make_optimizer,
    patience_for,
    training_inputs,
    without_optimizer,
)
from captcha_ocr.core.runtimes import OnnxReader, OpenVinoReader, export_onnx, quantize_onnx
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.steps.preprocess import load_split

PLATEAU_LOSS = 15.0  # the reference's loss sits near 16 until the model starts reading


class EpochClock(keras.callbacks.Callback):
    """Wall time of each epoch, validation loss included; first in the callback list."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        self.seconds.append(time.perf_counter() - self.started)


class Rows(keras.callbacks.Callback):
    """Each epoch's logs, after the other callbacks have added theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras's signature)
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})


def load_data() -> dict[str, object]:
    data: dict[str, object] = {"vocabulary": Vocabulary.load(paths.VOCABULARY)}
    for name in ("train", "val", "test"):
        data[name] = load_split(name)
        data[f"{name}_texts"] = pd.read_csv(
            paths.split_csv(name), dtype=str, keep_default_na=False
        )["label"].tolist()
    return data


def train_run(
    name: str, params: TrainParams, data: dict, max_epochs: int | None, out: Path
) -> dict:
    """Train one network, save it and its figures in ``out``; return the figures."""
    keras.utils.set_random_seed(params.seed)
    vocabulary: Vocabulary = data["vocabulary"]
    train, val = data["train"], data["val"]
    height, width = train["images"].shape[1:]
    if name == "reference":
        model = build_reference(height, width, vocabulary.num_classes)
    else:
        # As captcha_ocr.steps.train compiles it: the schedule is part of the recipe.
        model = build_training_model(params, height, width, vocabulary.num_classes)
        steps = math.ceil(len(train["images"]) / params.batch_size)
        model.compile(optimizer=make_optimizer(params, steps), loss=keras.losses.CTC())
    sized = epochs_for(params, math.ceil(len(train["images"]) / params.batch_size))
    epochs = min(sized, max_epochs or sized)
    clock, rows = EpochClock(), Rows()
    load_start = os.getloadavg()
    started = time.perf_counter()
    model.fit(
        **training_inputs(train["images"], train["labels"], params),
        validation_data=(val["images"][..., None], val["labels"]),
        epochs=epochs,
        verbose=2,
        callbacks=[
            clock,
            ValidationReading(val["images"], data["val_texts"], vocabulary),
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=patience_for(params, sized),
                restore_best_weights=True,
            ),
            rows,
        ],
    )
    wall = time.perf_counter() - started
    load_end = os.getloadavg()

    history = pd.DataFrame(rows.rows)
    history["epoch_seconds"] = clock.seconds
    history["train_seconds"] = history["epoch_seconds"].cumsum()
    run = {
        "name": name,
        "seed": params.seed,
        "params": model.count_params(),
        "epochs_run": len(history),
        "best_epoch": int(history["val_loss"].idxmin()) + 1,
        "train_seconds": float(history["train_seconds"].iloc[-1]),
        "wall_seconds_with_val_reading": wall,
        "load_start": load_start,
        "load_end": load_end,
        "finished": datetime.now().isoformat(timespec="seconds"),
        **scores(model, data),
    }
    history.to_csv(out / f"{name}.history.csv", index=False)
    without_optimizer(model).save(out / f"{name}.keras")
    (out / f"{name}.json").write_text(json.dumps(run, indent=1))
    print(f"{name}: {json.dumps(run)}", flush=True)
    return run


def scores(model: keras.Model, data: dict) -> dict[str, float]:
    """Exact-match and CER of the (restored) network on val, test and both."""
    vocabulary = data["vocabulary"]
    read = {
        name: predict_texts(model, data[name]["images"], vocabulary)[0] for name in ("val", "test")
    }
    both_truth = data["val_texts"] + data["test_texts"]
    return {
        "val_exact_match": exact_match(data["val_texts"], read["val"]),
        "test_exact_match": exact_match(data["test_texts"], read["test"]),
        "test_cer": character_error_rate(data["test_texts"], read["test"]),
        "val_test_exact_match": exact_match(both_truth, read["val"] + read["test"]),
        "val_test_cer": character_error_rate(both_truth, read["val"] + read["test"]),
    }


def measure_inference(out: Path, data: dict, repeats: int, export: ExportParams) -> None:
    """images/s, model.predict vs ONNX vs int8 ONNX, for every saved network, back to back."""
    load_start = os.getloadavg()
    calibration = data["train"]["images"][: export.calibration_images]
    for path in sorted(out.glob("*.json")):
        run = json.loads(path.read_text())
        network = keras.saving.load_model(out / f"{run['name']}.keras")
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path, int8_path = Path(tmp) / "network.onnx", Path(tmp) / "network_int8.onnx"
            export_onnx(network, onnx_path)
            quantize_onnx(onnx_path, int8_path, calibration)
            readers = {
                "onnx": OnnxReader(onnx_path, data["vocabulary"]),
                "int8": OpenVinoReader(int8_path, data["vocabulary"]),
            }
            run.update(time_network(network, readers, data, repeats))
        path.write_text(json.dumps(run, indent=1))
    load_end = os.getloadavg()
    (out / "inference_load.txt").write_text(json.dumps({"start": load_start, "end": load_end}))


def time_network(network: keras.Model, readers: dict, data: dict, repeats: int) -> dict:
    """images/s of model.predict and of each reader, alternating batch by batch; p50s."""
    images = data["test"]["images"]
    both = np.concatenate([data["val"]["images"], images])
    # An export must read like the network it came from, or its speed means nothing.
    keras_texts = predict_texts(network, both, data["vocabulary"])[0]
    figures = {}
    for name, reader in readers.items():
        pairs = zip(reader.read(both)[0], keras_texts, strict=True)
        figures[f"{name}_differs_on_val_test"] = sum(a != b for a, b in pairs)
    # 64, and 16: the batch the Keras example calls model.predict with.
    for size, suffix in ((64, ""), (16, "_16")):
        batch = np.resize(images, (size, *images.shape[1:]))

        def predict(batch=batch) -> object:
            logits = network.predict(batch[..., None].astype("float32"), verbose=0)
            return greedy_decode(np.asarray(keras.ops.softmax(logits)))

        # Alternate the ways batch by batch, so all see the same load from other work.
        times: dict[str, list[float]] = {"predict": [], **{name: [] for name in readers}}
        for _ in range(repeats):
            times["predict"] += timed(predict, 1)
            for name, reader in readers.items():
                times[name] += timed(lambda batch=batch, reader=reader: reader.read(batch), 1)
        for name, seconds in times.items():
            figures[f"{name}_images_per_s{suffix}"] = size / statistics.median(seconds)
    for name, reader in readers.items():
        single = timed(lambda reader=reader: reader.read(images[:1]), 10 * repeats)
        figures[f"{name}_p50_ms"] = statistics.median(single) * 1e3
    return figures


def reach(history: pd.DataFrame, target: float) -> tuple[int | None, float | None]:
    """First epoch (and training seconds to its end) with val exact-match >= target."""
    hit = history[history["val_exact_match"] >= target - 1e-9]
    if hit.empty:
        return None, None
    first = hit.iloc[0]
    return int(first["epoch"]), float(first["train_seconds"])


def leaves_plateau(history: pd.DataFrame) -> int | None:
    below = history[history["loss"] < PLATEAU_LOSS]
    return int(below["epoch"].iloc[0]) if not below.empty else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    runs.sort(key=lambda r: (r["name"] != "reference", r["name"]))
    reference = next((r for r in runs if r["name"] == "reference"), None)
    target = reference["val_exact_match"] if reference else None

    print(
        "\n| run | epochs (best) | train s | s/epoch | loss < 15 at epoch | "
        "reaches ref val EM: epoch, s | val EM | test EM | test CER | val+test EM | "
        "params | load 1-min start/end |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        history = pd.read_csv(out / f"{run['name']}.history.csv")
        epoch, seconds = reach(history, target) if target is not None else (None, None)
        run["reach_epoch"], run["reach_seconds"] = epoch, seconds
        run["plateau_epoch"] = leaves_plateau(history)
        print(
            f"| {run['name']} | {run['epochs_run']} ({run['best_epoch']}) | "
            f"{run['train_seconds']:.0f} | {run['train_seconds'] / run['epochs_run']:.1f} | "
            f"{fmt(run['plateau_epoch'], 'd')} | {fmt(epoch, 'd')}, {fmt(seconds, '.0f')} | "
            f"{run['val_exact_match']:.3f} | {run['test_exact_match']:.3f} | "
            f"{run['test_cer']:.4f} | {run['val_test_exact_match']:.3f} | {run['params']:,} | "
            f"{run['load_start'][0]:.1f}/{run['load_end'][0]:.1f} |"
        )
    defaults = [r for r in runs if r["name"] != "reference"]
    if defaults:
        print(f"\ndefault over {len(defaults)} seed(s): mean / worst")
        for key, worst in (
            ("test_exact_match", min),
            ("test_cer", max),
            ("val_test_exact_match", min),
            ("train_seconds", max),
        ):
            values = [r[key] for r in defaults]
            print(f"  {key:22} {statistics.mean(values):.4f} / {worst(values):.4f}")

    if all("int8_images_per_s" in r for r in runs):
        ways = (("predict", "model.predict"), ("onnx", "ONNX"), ("int8", "int8 OpenVINO"))
        header = [f"{label} img/s @{size}" for size in (64, 16) for _, label in ways]
        header += ["ONNX p50 ms", "int8 p50 ms", "val+test texts unlike Keras: ONNX / int8"]
        print("\n| run | " + " | ".join(header) + " |")
        print("|---|" + "---:|" * (len(header) - 1) + "---|")
        for run in runs:
            cells = [
                f"{run[f'{way}_images_per_s{suffix}']:.0f}"
                for suffix in ("", "_16")
                for way, _ in ways
            ]
            cells += [f"{run['onnx_p50_ms']:.2f}", f"{run['int8_p50_ms']:.2f}"]
            cells.append(f"{run['onnx_differs_on_val_test']} / {run['int8_differs_on_val_test']}")
            print(f"| {run['name']} | " + " | ".join(cells) + " |")
        inference_load = json.loads((out / "inference_load.txt").read_text())
        print(
            f"load average at start / end of the inference timing: "
            f"{inference_load['start']} / {inference_load['end']}"
        )

    if reference and defaults:
        print("\nissue-5 targets, default params:")
        worst_test = min(r["test_exact_match"] for r in defaults)
        worst_both = min(r["val_test_exact_match"] for r in defaults)
        print(f"  test exact-match >= 0.995 (worst seed): {worst_test:.3f}")
        print(f"  val+test exact-match >= 0.995 (worst seed): {worst_both:.3f}")
        budget = reference["train_seconds"] / 4
        reached = [r["reach_seconds"] for r in defaults]
        slowest = None if None in reached else max(reached)
        print(
            f"  reference's final val EM {target:.3f} within a quarter of its "
            f"{reference['train_seconds']:.0f} s ({budget:.0f} s): slowest seed "
            f"{fmt(slowest, '.0f')} s; whole default run, slowest seed "
            f"{max(r['train_seconds'] for r in defaults):.0f} s"
        )
        plateau = [r["plateau_epoch"] for r in defaults]
        print(f"  loss below {PLATEAU_LOSS} within 3 epochs: epochs {plateau}")
        if "int8_images_per_s" in reference:
            # The exported model a user reads fastest with: int8 under OpenVINO.
            for suffix, label in (("", "64"), ("_16", "16, the example's")):
                ratio = (
                    min(r[f"int8_images_per_s{suffix}"] for r in defaults)
                    / reference[f"predict_images_per_s{suffix}"]
                )
                print(f"  int8 img/s >= 5x reference model.predict, batch {label}: {ratio:.1f}x")
            p50 = max(r["int8_p50_ms"] for r in defaults)
            print(f"  single-image p50 <= 5 ms: int8 {p50:.2f} ms (slowest seed)")
        print(f"  parameters: default {defaults[0]['params']:,}, reference {reference['params']:,}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--max-epochs", type=int, help="cap every run (a smoke test)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("--repeats", type=int, default=20, help="batches timed per network")
    parser.add_argument("--no-reference", action="store_true", help="train the default only")
    parser.add_argument("--table-from", type=Path, help="print the table of an earlier --out")
    args = parser.parse_args()

    data = load_data()
    export = load_params(args.params).export
    if args.table_from:
        if not (args.table_from / "inference_load.txt").exists():
            measure_inference(args.table_from, data, args.repeats, export)
        table(args.table_from)
        return

    out = args.out or Path(tempfile.mkdtemp(prefix="train_compare_"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"train_compare: results in {out}, started {datetime.now():%Y-%m-%d %H:%M}, "
        f"load {os.getloadavg()}",
        flush=True,
    )
    default = load_params(args.params).train
    if not args.no_reference:
        train_run(
            "reference",
            REFERENCE_PARAMS.model_copy(update={"seed": args.seeds[0]}),
            data,
            args.max_epochs,
            out,
        )
    for seed in args.seeds:
        train_run(
            f"default-seed{seed}",
            default.model_copy(update={"seed": seed}),
            data,
            args.max_epochs,
            out,
        )
    measure_inference(out, data, args.repeats, export)
    table(out)
    print(f"finished {datetime.now():%Y-%m-%d %H:%M}, load {os.getloadavg()}")


if __name__ == "__main__":
    main()
