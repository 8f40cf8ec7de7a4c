"""Step 6, promote: give the reader this pipeline's export step registered the
``champion`` alias if it beats the current champion by the gate in params.yaml,
else ``challenger``.

    captcha-ocr promote [--version N|latest] [--force --reason TEXT]

The candidate is the version named in models/registry.json (the register
stage: this reader in the store in use) or models/export/registered.json (so
two pipelines promoting at once each promote their own model), else the
newest. A file naming a version of another store is refused.
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
from captcha_ocr.store import check_same_store, file_sha256


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
    """The version of ``model_name`` this pipeline registered, in the store in use.

    ``models/registry.json`` (the register stage, under DVC) else export's
    ``registered.json`` (Kubeflow, ``mlflow run``). A version of another store
    is refused by name (``store.check_same_store``), never promoted here.
    """
    for path in (paths.REGISTRY, paths.REGISTERED):
        registered = json.loads(path.read_text()) if path.is_file() else {}
        if registered.get("name") != model_name or not of_this_export(registered):
            continue
        check_same_store(registered, path)
        return str(registered["version"])
    return None


def of_this_export(registered: dict) -> bool:
    """False for a registry.json left from an older export (``mlflow run -e export`` since)."""
    digest = registered.get("reader_sha256")
    return digest is None or not paths.READER.is_file() or digest == file_sha256(paths.READER)
