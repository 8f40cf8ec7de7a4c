"""Params for end-to-end runs that finish in seconds: 64 real captchas, a tiny model."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_params(path: Path, epochs: int) -> None:
    """Rewrite params.yaml at ``path`` for a quick run on 64 images."""
    params = yaml.safe_load(path.read_text())
    params["preprocess"] |= {"limit": 64}
    params["train"] |= {
        "epochs": epochs,
        "patience": epochs,
        "conv_filters": [8, 16],
        "dense_units": 16,
        "sequence_units": [16],
    }
    # A model this small reads nothing right; let it become the first champion anyway.
    params["promote"] |= {"min_exact_match": 0.0}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def set_source(path: Path, source: Path | str) -> None:
    """Point ``ingest.source`` in the params.yaml at ``path`` to ``source``."""
    params = yaml.safe_load(path.read_text())
    params["ingest"]["source"] = str(source)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
