"""Step 6, promote: give the reader this pipeline's export step registered the
``champion`` alias if it beats the current champion by the gate in params.yaml,
else ``challenger``.

    captcha-ocr promote [--version N|latest] [--force --reason TEXT]

The candidate is the version named in models/export/registered.json (so two
pipelines promoting at once each promote their own model), else the newest.
When it was scored on another test split than the champion (newer data), the
champion is read from the registry and scored on the candidate's test split
here (data/splits/test.csv, data/prepared/test.npz), and the gate compares the
two on the same images.
"""

from __future__ import annotations

import argparse
import json

from captcha_ocr import paths, tracking
from captcha_ocr.config import load_params
from captcha_ocr.files import write_json
from captcha_ocr.promotion.gate import promote
from captcha_ocr.promotion.rescoring import on_equal_terms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr promote", description=__doc__, allow_abbrev=False
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--version",
        help="registered version to promote, or 'latest' (default: the one export registered)",
    )
    parser.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    parser.add_argument("--reason", help="why the gate is overridden; kept as a version tag")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    tracking.use_experiment()
    version = args.version or exported_version(params.export.model_name)
    result = promote(
        params.export.model_name,
        params.promote,
        version=None if version in (None, "latest") else version,
        force=args.force,
        reason=args.reason,
        rescore=on_equal_terms,
    )
    write_json(paths.PROMOTION, result.as_dict())
    print(result.table())
    print(
        "results: `dvc metrics show` (test metrics), `dvc plots show` (curves, confusion),\n"
        "         reports/ (errors, sample predictions), "
        f"`mlflow ui` (runs and registry in {tracking.redact(tracking.tracking_uri())})"
    )


def exported_version(model_name: str) -> str | None:
    """The version the export step registered here, if it registered ``model_name``."""
    if not paths.REGISTERED.is_file():
        return None
    registered = json.loads(paths.REGISTERED.read_text())
    return str(registered["version"]) if registered.get("name") == model_name else None
