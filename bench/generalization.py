"""Does the default recipe read captchas it was not fitted to? Three sets, two recipes, one run.

    python bench/generalization.py [--datasets v2 library colour] [--seeds 1337 1 2]
                                   [--recipes default reference] [--out DIR]
    python bench/generalization.py --table-from DIR    # the table of a finished or cut run

Run from the project folder. For each dataset it runs the project's own steps,
``captcha-ocr ingest`` and ``preprocess``, once, in a scratch project with the
shipped ``params.yaml`` and nothing changed but ``ingest.source``: image size,
channels, charset and label lengths are all ``auto``. Then, for each recipe
and seed, ``captcha-ocr train`` and ``evaluate`` on that split, with MLflow in
a scratch sqlite store. Nothing is tuned per dataset.

- ``default``: the shipped ``train:`` section, with only the seed changed.
- ``reference``: the Keras example's recipe (``bench/reference.py``). The
  example cannot take labels of mixed lengths as written (keras-io #229); here
  it trains on the project's padded labels, like every recipe.

The datasets:

- ``v2``: captcha_images_v2, ``../shared/data/captcha_images_v2.zip``;
- ``library``: 4000 captchas from the ``captcha`` library at 160x60, 4-6
  characters of 0-9A-Z (``bench/captcha_sets.py``: the same images every run);
- ``colour``: 3000 captchas of 8 characters at 64x256, colour, rotated
  characters, distractor strokes (same script).

Each run's figures go to ``--out`` as soon as it ends: test exact-match with
its 95% Wilson interval, CER, exact-match by label length, epochs, training
wall time and whether validation CER fell below 0.5 (left the plateau). On
``library`` it also counts test captchas that hold an O or a 0, which the
library's default font draws alike (bench/README.md has the evidence).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from captcha_sets import write_set
from reference import reference_train_section

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DATASETS = ("v2", "library", "colour")
RECIPES = ("default", "reference")
LOOK_ALIKE = set("O0")


def dataset_zip(name: str, cache: Path) -> Path:
    if name == "v2":
        path = (PROJECT / "../shared/data/captcha_images_v2.zip").resolve()
        if not path.is_file():
            sys.exit(f"{path}: the captcha_images_v2 zip is missing")
        return path
    path = cache / f"{name}.zip"
    if not path.exists():
        write_set(name, path)
    return path


def step(name: str, folder: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run one project step in ``folder``; return its wall time in seconds and its output."""
    started = time.perf_counter()
    done = subprocess.run(
        ["captcha-ocr", name], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        output = done.stdout[-2000:] + done.stderr[-4000:]
        sys.exit(f"captcha-ocr {name} failed in {folder}:\n{output}")
    return time.perf_counter() - started, done.stdout


def write_params(folder: Path, source: Path, train_overrides: dict) -> None:
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["ingest"]["source"] = str(source)
    params["train"].update(train_overrides)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def prepare(name: str, source: Path, out: Path, env: dict[str, str]) -> Path:
    """Ingest and preprocess once per dataset, with the shipped params."""
    folder = out / name / "data_project"
    if (folder / "reports" / "data_report.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    write_params(folder, source, {})
    for name_ in ("ingest", "preprocess"):
        step(name_, folder, env)
    return folder


def train_and_score(prepared: Path, run: Path, overrides: dict, env: dict[str, str]) -> dict:
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    shutil.copytree(
        prepared / "data", run / "data", ignore=shutil.ignore_patterns("images", "*.zip")
    )
    shutil.copytree(prepared / "reports", run / "reports")
    shutil.copy(prepared / "params.yaml", run / "params.yaml")
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["train"].update(overrides)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{run / 'mlflow.db'}"}
    seconds, trained = step("train", run, env)
    step("evaluate", run, env)
    metrics = json.loads((run / "reports" / "metrics.json").read_text())
    history = pd.read_csv(run / "reports" / "train_history.csv")
    figures = {
        "train_seconds": round(seconds, 1),
        "epochs": len(history),
        "left_plateau": bool("val_cer" in history and (history["val_cer"] < 0.5).any()),
        # An auto run still on the plateau at its budget starts again (core/recipe.py).
        "restarts": trained.count("starting again from fresh weights"),
        **metrics,
    }
    figures.update(look_alike_counts(run))
    return figures


def look_alike_counts(run: Path) -> dict:
    """Exact match by label length, and on the test captchas that hold an O or a 0."""
    test = pd.read_csv(run / "data" / "splits" / "test.csv", dtype=str, keep_default_na=False)
    errors = pd.read_csv(run / "reports" / "test_errors.csv", dtype=str, keep_default_na=False)
    test["read"] = ~test["file"].isin(set(errors["file"]))
    by_length = test.groupby(test["label"].str.len())["read"].agg(["sum", "count"])
    holding = test[test["label"].map(lambda label: bool(LOOK_ALIKE & set(label)))]
    return {
        "read_by_length": {str(n): f"{r['sum']}/{r['count']}" for n, r in by_length.iterrows()},
        "test_with_O_or_0": len(holding),
        "read_with_O_or_0": int(holding["read"].sum()),
    }


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


def plateau_cell(figures: dict) -> str:
    """Whether the run left the plateau, and in which attempt when it started again."""
    attempt = figures.get("restarts", 0) + 1
    left = "yes" if figures["left_plateau"] else "NO"
    return f"{left} (attempt {attempt})" if attempt > 1 else left


def table(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/figures.json"))]
    if not rows:
        return "no finished run in " + str(out)
    lines = [
        "| dataset | recipe | seed | test exact-match [95% CI] | CER | epochs | train time"
        " | left plateau |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["recipe"], str(r["seed"]))):
        n = r["test_samples"]
        k = n - r["test_errors"]
        low, high = wilson(k, n)
        lines.append(
            f"| {r['dataset']} | {r['recipe']} | {r['seed']} | {k}/{n} = {k / n:.1%}"
            f" [{low:.1%}, {high:.1%}] | {r['test_cer']:.4f} | {r['epochs']} |"
            f" {r['train_seconds'] / 60:.1f} min | {plateau_cell(r)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337, 1, 2])
    parser.add_argument("--out", type=Path, default=PROJECT / "bench" / "out" / "generalization")
    parser.add_argument("--table-from", type=Path)
    args = parser.parse_args()
    if args.table_from:
        print(table(args.table_from))
        return
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    for dataset in args.datasets:
        prepared = prepare(dataset, dataset_zip(dataset, args.out / "sets"), args.out, env)
        for recipe in args.recipes:
            for seed in args.seeds:
                recipe_section = reference_train_section() if recipe == "reference" else {}
                overrides = {**recipe_section, "seed": seed}
                run = args.out / dataset / f"{recipe}-{seed}"
                figures = train_and_score(prepared, run, overrides, env)
                figures.update(dataset=dataset, recipe=recipe, seed=seed)
                (run / "figures.json").write_text(json.dumps(figures, indent=2))
                shutil.rmtree(run / "data")  # the copy of the split; the figures stay
                print(json.dumps(figures), flush=True)
    print(table(args.out))


if __name__ == "__main__":
    main()
