"""Check a manifest (JSON on stdin) against the kserve SDK's InferenceService models.

Run in the serving venv. Every key must be a field of the model it sits in
(kserve's generated models, and the Kubernetes client's for pods and
containers), every value of the field's type, and each model is built from
its fields, so a required field that is missing fails too. Prints "ok" or
the path of the first problem and exits 1.
"""

from __future__ import annotations

import json
import re
import sys

import kserve.models
import kubernetes.client.models

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def model_class(name: str):
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no model {name}")


def build(value, kind: str, where: str):
    if kind in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[kind]) or (kind == "int" and isinstance(value, bool)):
            raise TypeError(f"{where}: {value!r} is not {kind}")
        return value
    if kind in ("ResourceQuantity", "IntOrString"):  # strings or numbers, as Kubernetes reads them
        if not isinstance(value, str | int | float):
            raise TypeError(f"{where}: {value!r} is not a quantity")
        return value
    # kserve's models say list[X] and dict(str, X); the Kubernetes client's List[X], Dict[str, X].
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", kind):
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected a list")
        return [build(v, match[1], f"{where}[{i}]") for i, v in enumerate(value)]
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", kind):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping")
        inner = match[1] or match[2]
        return {k: build(v, inner, f"{where}.{k}") for k, v in value.items()}
    cls = model_class(kind)
    if not isinstance(value, dict):
        raise TypeError(f"{where}: expected a {kind} mapping")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    if unknown:
        raise KeyError(f"{where}: {kind} has no field {unknown[0]!r}")
    types = {k: cls.openapi_types[by_json[k]] for k in value}
    fields = {by_json[k]: build(v, types[k], f"{where}.{k}") for k, v in value.items()}
    return cls(**fields)  # generated models refuse a missing required field (ValueError)


def main() -> None:
    manifest = json.loads(sys.stdin.read())
    try:
        build(manifest, "V1beta1InferenceService", "InferenceService")
    except (TypeError, KeyError, ValueError, LookupError) as err:
        print(f"invalid: {err}")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
