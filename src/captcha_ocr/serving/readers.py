"""Open the reader that ``--model`` names, without running anything that came with it.

A model is input like any other: a folder or an MLflow URI can hold a pickle
or code that runs the moment MLflow loads it. So an MLflow model is never
handed to ``mlflow.pyfunc.load_model`` here. Its ``MLmodel`` file is fetched
alone and must describe this project's reader: the python_function flavor
loaded from code (``pyfunc_model.py``), nothing else. Its network (ONNX)
and vocabulary artifacts are then fetched and opened under the runtime the
model serves with (its ``runtime`` config), so the demo reads as the served
model does (the KServe predictor names OpenVINO instead, its image's one
runtime); a version registered before the ONNX network was served has only
a ``.keras`` artifact, opened in Keras safe mode. Either way by the code
installed here: the model's own code files are never run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import yaml

from captcha_ocr.core.readings import ModelLoadError
from captcha_ocr.errors import CaptchaOcrError

READER_NAME = "captcha_reader.keras"
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
CODE_FILE = "pyfunc_model.py"


class NotOurModel(ModelLoadError):
    pass


def open_reader(model: str):
    """(reader, source) for a reader file or folder, an ONNX network or an MLflow model."""
    local = Path(unquote(urlparse(model).path)) if model.startswith("file:") else Path(model)
    if local.is_dir() and (local / READER_NAME).is_file():
        local = local / READER_NAME
    if local.is_file() and local.suffix == ".keras":
        from captcha_ocr.core.model import CaptchaReader  # Keras, only for a .keras file

        return CaptchaReader.load(local), {"kind": "local file", "uri": str(local.resolve())}
    if local.is_file() and local.suffix == ".onnx":
        from captcha_ocr.core.runtimes import open_onnx_reader

        # The int8 network reads fastest; any ONNX network of ours reads.
        source = {"kind": "local ONNX file (OpenVINO)", "uri": str(local.resolve())}
        return open_onnx_reader(local), source
    if local.is_dir() and (local / "MLmodel").is_file():
        return open_mlflow_reader(model, local), {"kind": "MLflow model", "uri": model}
    if ":/" in model and not model.startswith("file:"):
        from captcha_ocr import tracking

        tracking.use_existing_store()
        source = resolve_model_uri(model)
        return open_mlflow_reader(source["uri"]), source
    raise FileNotFoundError(f"{model}: not a reader file, folder, ONNX network or MLflow model URI")


def resolve_model_uri(uri: str) -> dict[str, str]:
    """``models:/name@alias`` or ``models:/name/version`` to the version it means.

    The version is resolved once, at load time, and that exact version is
    loaded: ``source`` then says which version answers even if the alias moves
    on while this process runs.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if not match:
        return {"kind": "MLflow model", "uri": uri}
    name, alias, version = match.groups()
    client = MlflowClient()
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as err:
        raise CaptchaOcrError(f"{uri}: {err.message}") from None
    source = {
        "kind": "registered model",
        "uri": f"models:/{name}/{found.version}",
        "name": name,
        "version": str(found.version),
        "run_id": found.run_id or "",
        "test_exact_match": found.tags.get("test_exact_match", ""),
    }
    if alias:
        source["alias"] = alias
    return source


def open_mlflow_reader(
    uri: str, folder: Path | None = None, threads: int | None = None, runtime: str | None = None
):
    """The reader in the MLflow model at ``uri`` (or the local ``folder``), checked first;
    its exported network computes on ``threads`` threads (default: the runtime's),
    under ``runtime`` if given, else under the one the model was registered with."""
    root = folder if folder is not None else artifact_root(uri)
    with tempfile.TemporaryDirectory(prefix="captcha-ocr-model-") as scratch:
        mlmodel = fetch(uri, root, "MLmodel", scratch)
        text = mlmodel.read_text(encoding="utf-8", errors="replace")
        served = network_artifacts(uri, text)
        artifact = served[0] if served else reader_artifact(uri, text)
        local = fetch(uri, root, artifact, scratch)
        try:
            if served:
                # Each runtime reads the whole file into memory: the scratch copy may go.
                vocabulary = fetch(uri, root, served[1], scratch)
                return open_served_network(local, vocabulary, runtime or served[2], threads)
            from captcha_ocr.core.model import CaptchaReader  # an older version: Keras

            # Keras reads the whole archive into memory: the scratch copy may go.
            return CaptchaReader.load(local)
        except ModelLoadError as err:  # named by the URI, not by a scratch copy
            named = str(err).replace(str(local), f"{uri.rstrip('/')}/{artifact}")
            raise NotOurModel(named) from None


def open_served_network(
    network: Path, vocabulary_file: Path, runtime: str, threads: int | None = None
):
    """The network under ``runtime``: the one the registered model serves with, or
    the caller's choice (the KServe predictor's OpenVINO)."""
    from captcha_ocr.core.runtimes import open_network
    from captcha_ocr.core.vocabulary import Vocabulary

    try:
        vocabulary = Vocabulary.load(vocabulary_file)
    except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(
            f"{network}: its vocabulary is not a captcha vocabulary: {err}"
        ) from None
    # Each runtime refuses a file it cannot read, naming it (ModelLoadError).
    return open_network(network, vocabulary, runtime, threads=threads)


def network_artifacts(uri: str, mlmodel: str) -> tuple[str, str, str] | None:
    """(network, vocabulary, runtime) of a model that serves its ONNX network, else None.

    The MLmodel must be this project's reader (``reader_artifact`` checks it).
    """
    reader_artifact(uri, mlmodel)
    pyfunc = yaml.safe_load(mlmodel)["flavors"]["python_function"]
    artifacts = pyfunc.get("artifacts") or {}
    if "network" not in artifacts:
        return None
    config = pyfunc.get("config") or {}  # the model_config it was logged with
    runtime = config.get("runtime") if isinstance(config, dict) else None
    found = []
    for name, suffix in (("network", ".onnx"), ("vocabulary", ".json")):
        entry = artifacts.get(name)
        path = PurePosixPath(str(entry.get("path", ""))) if isinstance(entry, dict) else None
        if path is None or path.suffix != suffix or path.is_absolute() or ".." in path.parts:
            raise NotOurModel(f"{uri}: is not a captcha-ocr reader: no {suffix} {name} in it")
        found.append(str(path))
    if runtime not in ("openvino", "onnxruntime"):
        raise NotOurModel(f"{uri}: is not a captcha-ocr reader: unknown runtime {runtime!r}")
    return found[0], found[1], runtime


def artifact_root(uri: str) -> str:
    """Where the model's files can be fetched one by one.

    A logged model's ``models:/m-<id>`` names no registered model, and MLflow
    fetches single files of it only from its artifact location.
    """
    match = re.fullmatch(r"models:/(m-[0-9a-f]{32})/?", uri)
    if not match:
        return uri
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_logged_model(match[1]).artifact_location
    except MlflowException as err:
        raise CaptchaOcrError(f"{uri}: no MLflow model found there: {err.message}") from None


def fetch(uri: str, root: str | Path, relative: str, scratch: str) -> Path:
    """One file of the model, downloaded alone (or found in the local folder)."""
    if isinstance(root, Path):
        path = root / relative
        if not path.is_file():
            raise NotOurModel(f"{uri}: is not a captcha-ocr reader: no {relative} in it")
        return path
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{root.rstrip('/')}/{relative}", dst_path=scratch
        )
    except MlflowException as err:
        raise CaptchaOcrError(f"{uri}: no MLflow model found there: {err.message}") from None
    except OSError as err:
        raise CaptchaOcrError(f"{uri}: no {relative} found there: {err}") from None
    return Path(found)


def reader_artifact(uri: str, mlmodel: str) -> str:
    """The ``.keras`` file's path in the model, if its MLmodel is this project's reader."""

    def refuse(why: str) -> NotOurModel:
        return NotOurModel(f"{uri}: is not a captcha-ocr reader: {why}")

    try:
        spec = yaml.safe_load(mlmodel)
    except yaml.YAMLError:
        raise refuse("its MLmodel file is not YAML") from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get("python_function"), dict):
        raise refuse("it has no python_function flavor")
    others = sorted(set(flavors) - {"python_function"})
    if others:
        raise refuse(f"it is a {', '.join(others)} model")
    pyfunc = flavors["python_function"]
    loader = pyfunc.get("loader_module")
    if loader != CODE_LOADER:
        what = "a pickled Python object" if "python_model" in pyfunc else f"loaded by {loader}"
        raise refuse(f"its python_function model is {what}, not {CODE_FILE} code")
    if PurePosixPath(str(pyfunc.get("model_code_path", ""))).name != CODE_FILE:
        raise refuse(f"its code is {pyfunc.get('model_code_path')!r}, not {CODE_FILE}")
    artifacts = pyfunc.get("artifacts")
    reader = artifacts.get("reader") if isinstance(artifacts, dict) else None
    path = PurePosixPath(str(reader.get("path", ""))) if isinstance(reader, dict) else None
    if path is None or path.suffix != ".keras" or path.is_absolute() or ".." in path.parts:
        raise refuse("it has no reader artifact inside it that is a .keras file")
    return str(path)
