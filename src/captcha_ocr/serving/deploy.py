"""Deploy a registered version where Kubeflow users serve: a KServe InferenceService.

    captcha-ocr deploy kserve [--model models:/captcha-ocr@champion] [--name captcha-ocr]
                              [--namespace NS] [--image captcha-ocr-serve:0.1.0]
                              [--storage-uri s3://...] [-o inferenceservice.yaml]

Writes the manifest (``kubectl apply -f`` it); nothing is sent to a cluster.
The predictor is this project's serving image (``Dockerfile.serve``) running
``captcha_ocr.serving.kserve_predictor`` on the V2 inference protocol; KServe's
storage initializer copies the version's MLflow model from ``STORAGE_URI`` to
/mnt/models before it starts. The version is resolved once, here: the manifest
names version N, not the alias, so a later promotion changes nothing until
the manifest is written and applied again.

The storage URI is where the registry keeps the version's files; a cluster can
fetch only s3://, gs://, https://, pvc:// and the like, so a version stored on
this machine (file paths, ``mlflow-artifacts:``) needs ``--storage-uri``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from captcha_ocr.errors import CaptchaOcrError

DEFAULT_MODEL = "models:/captcha-ocr@champion"
DEFAULT_IMAGE = "captcha-ocr-serve:0.1.0"
HTTP_PORT = 8080
CPU_LIMIT = 2  # cores, of the predictor's container
# What KServe's storage initializer downloads from.
CLUSTER_SCHEMES = ("s3", "gs", "https", "http", "pvc", "hdfs", "webhdfs", "oci", "hf")
# A Kubernetes object name (RFC 1123 label; KServe adds suffixes, so keep it short).
NAME = re.compile(r"[a-z]([-a-z0-9]{0,43}[a-z0-9])?")


# The predictor's one runtime: OpenVINO reads both networks, so the serving image
# needs no onnxruntime (76 MiB) and stays under a quarter of the training install.
PREDICTOR_RUNTIME = "openvino"
# A version's serving_runtime tag (how its pyfunc reads) -> the precision it serves in.
PRECISIONS = {"openvino-int8": "int8", "onnxruntime-float32": "float32"}


def predictor_runtime(serving_runtime: str) -> str:
    """How the predictor reads a version: under OpenVINO, the int8 network if it has one."""
    if serving_runtime not in PRECISIONS:
        raise CaptchaOcrError(
            f"serving_runtime tag {serving_runtime!r}: expected one of {sorted(PRECISIONS)}"
        )
    return f"{PREDICTOR_RUNTIME}-{PRECISIONS[serving_runtime]}"


def inference_service(
    name: str,
    storage_uri: str,
    source: dict[str, str],
    image: str = DEFAULT_IMAGE,
    namespace: str | None = None,
) -> dict:
    """The InferenceService manifest for one registered version."""
    metadata: dict = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "captcha-ocr"},
        "annotations": {
            "captcha-ocr/model": source["uri"],
            "captcha-ocr/serving-runtime": predictor_runtime(source.get("serving_runtime", "")),
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    container = {
        "name": "kserve-container",
        "image": image,
        "args": ["--model_name", name, "--model_dir", "/mnt/models", "--http_port", str(HTTP_PORT)]
        # A worker process per core of the limit: on 2 cores, 4 clients sending one
        # image each got 17% more answers a second than from one (bench/README.md).
        + ["--workers", str(CPU_LIMIT)],
        "env": [{"name": "STORAGE_URI", "value": storage_uri}],
        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
        # The int8 network reads ~2000 images/s on 2 cores; one core serves a good share.
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": str(CPU_LIMIT), "memory": "2Gi"},
        },
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {"containers": [container]}},
    }


def check_storage_uri(uri: str, model: str) -> str:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in CLUSTER_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in CLUSTER_SCHEMES)
        raise CaptchaOcrError(
            f"{model}: its files are at {uri}, which a cluster cannot fetch; copy them to "
            f"object storage and pass --storage-uri ({schemes})"
        )
    return uri


def deploy_kserve(
    model: str,
    name: str,
    image: str,
    namespace: str | None,
    storage_uri: str | None,
) -> dict:
    from mlflow import MlflowClient

    from captcha_ocr import tracking
    from captcha_ocr.serving.readers import resolve_model_uri

    if not NAME.fullmatch(name):
        raise CaptchaOcrError(f"--name {name!r}: lowercase letters, digits and '-', 1-45 long")
    tracking.use_existing_store()
    source = resolve_model_uri(model)
    if "version" not in source:
        raise CaptchaOcrError(f"{model}: not a registered model (models:/NAME@ALIAS or /VERSION)")
    client = MlflowClient()
    version = client.get_model_version(source["name"], source["version"])
    source["serving_runtime"] = version.tags.get("serving_runtime", "")
    if not source["serving_runtime"]:
        raise CaptchaOcrError(
            f"{source['uri']}: registered before models served their ONNX network "
            "(no serving_runtime tag); export it again to deploy it"
        )
    found = storage_uri or client.get_model_version_download_uri(source["name"], version.version)
    uri = check_storage_uri(found, source["uri"])
    return inference_service(name, uri, source, image, namespace)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="captcha-ocr deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("target", choices=["kserve"])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--name", default="captcha-ocr", help="the InferenceService's name")
    parser.add_argument("--namespace")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the serving image")
    parser.add_argument("--storage-uri", help="where the cluster fetches the model's files")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    manifest = deploy_kserve(args.model, args.name, args.image, args.namespace, args.storage_uri)
    text = yaml.safe_dump(manifest, sort_keys=False)
    if args.output is None:
        sys.stdout.write(text)
        return
    from captcha_ocr.files import atomic_path

    with atomic_path(args.output) as tmp:
        tmp.write_text(text)
    print(f"captcha-ocr deploy: wrote {args.output}; kubectl apply -f {args.output}")
