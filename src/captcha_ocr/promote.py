"""Step 6, promote: give the newest registered reader the ``champion`` alias if
it beats the current champion by the gate in params.yaml, else ``challenger``.

    captcha-ocr promote [--version N] [--force --reason TEXT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr import tracking
from captcha_ocr.config import load_params
from captcha_ocr.files import write_json
from captcha_ocr.registry import format_table, promote

RESULT_PATH = Path("reports/promotion.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="captcha-ocr promote", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--version", default="latest", help="registered version to promote (default: newest)"
    )
    parser.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    parser.add_argument("--reason", help="why the gate is overridden; kept as a version tag")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    tracking.use_experiment()
    result = promote(
        params.export.model_name,
        params.promote,
        version=None if args.version == "latest" else args.version,
        force=args.force,
        reason=args.reason,
    )
    write_json(RESULT_PATH, result)
    print(format_table(result))
    print(
        "results: `dvc metrics show` (test metrics), `dvc plots show` (curves, confusion),\n"
        "         reports/ (errors, sample predictions), "
        f"`mlflow ui` (runs and registry in {tracking.tracking_uri()})"
    )
