"""``captcha-ocr pipeline``: compile, run locally, or submit the Kubeflow pipeline.

    captcha-ocr pipeline compile [-o pipeline.yaml] [--param k=v ...]
    captcha-ocr pipeline run-local [--param train.epochs=1 ...]
    captcha-ocr pipeline submit --host URL [--experiment NAME] [--namespace NS]
                                [--param k=v ...] [--wait]

The pipeline and its components live in this package (``components/`` and
``pipeline/`` in the project folder re-export them). Params come from
params.yaml; ``--param section.key=value`` overrides one (the value is read as
YAML) and is checked like params.yaml before anything runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from captcha_ocr.config import ParamsError, validate_params
from captcha_ocr.errors import CaptchaOcrError
from captcha_ocr.redaction import redact_source

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
LOCAL_ROOT = Path("kfp_local")


class PipelineError(CaptchaOcrError):
    pass


def load_pipeline_module():
    """The pipeline module, imported after ``--image`` has been put in the environment."""
    from captcha_ocr.kubeflow import pipeline

    return pipeline


def apply_overrides(sections: dict[str, dict], overrides: list[str]) -> dict[str, dict]:
    """``section.key=value`` pairs onto the params; the result is validated."""
    result = {name: dict(values) for name, values in sections.items()}
    for override in overrides:
        name, sep, text = override.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot:
            raise ParamsError(f"--param {override!r}: expected section.key=value")
        if section not in result:
            raise ParamsError(f"--param {override!r}: unknown section {section!r}")
        try:
            result[section][key] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ParamsError(
                f"--param {override!r}: the value is not valid YAML ({problem})"
            ) from None
    validate_params(result, "--param")
    return result


def pipeline_arguments(
    module, options, overrides: list[str], tracking_uri: str | None
) -> dict[str, object]:
    arguments: dict[str, object] = dict(
        apply_overrides(module.default_params(options.params_path), overrides)
    )
    if tracking_uri is not None:
        arguments["mlflow_tracking_uri"] = tracking_uri
    return arguments


def local_run_arguments(
    module, options, overrides: list[str], tracking_uri: str, base: Path
) -> dict[str, object]:
    """The arguments of a local run, ``ingest.source`` made absolute against ``base``.

    Components run in scratch folders, where a relative path names nothing.
    """
    arguments = pipeline_arguments(module, options, overrides, tracking_uri)
    ingest = dict(cast(dict, arguments["ingest"]))
    ingest["source"] = absolute_source(ingest["source"], base)
    arguments["ingest"] = ingest
    return arguments


def absolute_source(source: str, base: Path) -> str:
    """A local path (``file://`` or none, as ingest reads them) made absolute; URLs as they are."""
    if "://" in source and not source.startswith("file://"):
        return source
    path = Path(source.removeprefix("file://")).expanduser()
    return os.path.abspath(base / path)  # noqa: PTH100 (normalizes '..', keeps links)


def compile_pipeline(module, options, output: Path) -> Path:
    from kfp import compiler

    compiler.Compiler().compile(module.build_pipeline(options), str(output))
    return output


def checked_tracking_uri(uri: str) -> str:
    """The MLflow URI every step will use: absolute, and with no credentials in it.

    Steps run in scratch folders, so a relative sqlite path would give each step
    a store of its own; and the URI is a pipeline parameter, visible in the KFP UI.
    """
    from urllib.parse import urlsplit

    if urlsplit(uri).username or urlsplit(uri).password:
        raise PipelineError(
            "the MLflow URI holds credentials, which would show in the pipeline's "
            "parameters; put them in a Kubernetes secret and pass --mlflow-secret NAME"
        )
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


def check_source_is_public(sections: Mapping[str, Any], where: str) -> None:
    """Pipeline parameters show in the Kubeflow UI: refuse credentials in ingest.source
    and ingest.repo."""
    for key in ("source", "repo"):
        value = str(sections.get("ingest", {}).get(key) or "")
        if redact_source(value) != value:
            raise PipelineError(
                f"{where}: ingest.{key} {redact_source(value)!r} holds credentials, which "
                "would show in the pipeline's parameters; put the URL in a Kubernetes secret "
                "(key `source`) and pass --source-secret NAME, or give the credentials "
                "to the pods in the environment"
            )


def run_local(module, options, arguments: dict[str, object], root: Path) -> None:
    """The whole pipeline, each component in a subprocess of this Python."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root.resolve()))
    try:
        module.build_pipeline(options)(**arguments)
    except RuntimeError as err:  # kfp.local: a task failed; its log is above
        raise PipelineError(f"the local run failed: {err}") from None


def submit(
    module,
    options,
    host: str,
    arguments: dict[str, object],
    experiment: str,
    namespace: str | None,
    run_name: str | None,
    wait: bool,
    timeout: int,
):
    import kfp

    try:
        # kfp.Client talks to the server as soon as it is made.
        client = kfp.Client(
            host=host, namespace=namespace, existing_token=os.environ.get(TOKEN_ENV)
        )
        with tempfile.TemporaryDirectory() as folder:
            package = compile_pipeline(module, options, Path(folder) / "pipeline.yaml")
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
            )
    except Exception as err:  # connection errors, HTTP errors, timeouts of the health check
        raise PipelineError(
            f"{host}: the Kubeflow Pipelines API did not take the run: {err}"
        ) from None
    url = f"{client._get_url_prefix()}/#/runs/details/{result.run_id}"
    print(f"submitted run {result.run_id} to experiment {experiment!r}: {url}")
    if wait:
        try:
            run = client.wait_for_run_completion(result.run_id, timeout=timeout)
        except TimeoutError:
            raise PipelineError(
                f"run {result.run_id} still running after {timeout} s: {url}"
            ) from None
        state = getattr(run, "state", "unknown")
        print(f"run {result.run_id} finished: {state}")
        if str(state).upper() != "SUCCEEDED":
            raise PipelineError(f"run {result.run_id} ended {state}: {url}")
    return result.run_id, url


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: `--param` must never be read as `--params`.
    parser = argparse.ArgumentParser(
        prog="captcha-ocr pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    # What every command takes: where the params are and how the pods are shaped.
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--params", type=Path, default=Path("params.yaml"))
    common.add_argument("--image", help="container image of the components (or $CAPTCHA_OCR_IMAGE)")
    common.add_argument("--mlflow-uri", help="MLflow tracking URI the pods log to")
    common.add_argument("--mlflow-secret", help="Kubernetes secret with MLflow credentials")
    common.add_argument("--source-secret", help="Kubernetes secret with the data URL (`source`)")
    common.add_argument(
        "--storage-secret",
        help="Kubernetes secret with S3 credentials (AWS_*), for ingest and the MLflow steps",
    )
    common.add_argument(
        "--storage-endpoint", help="object store URL (MinIO, ...), for ingest and the MLflow steps"
    )
    common.add_argument("--train-cpu", default="2")
    common.add_argument("--train-memory", default="4G")
    common.add_argument("--accelerator-type", help="e.g. nvidia.com/gpu")
    common.add_argument("--accelerator-count", type=int, default=1)
    common.add_argument("--param", action="append", default=[], metavar="SECTION.KEY=VALUE")

    commands = parser.add_subparsers(dest="command", required=True)
    compile_cmd = commands.add_parser("compile", parents=[common], allow_abbrev=False)
    compile_cmd.add_argument("-o", "--output", type=Path, default="pipeline.yaml")
    local_cmd = commands.add_parser("run-local", parents=[common], allow_abbrev=False)
    local_cmd.add_argument("--pipeline-root", type=Path, default=LOCAL_ROOT)
    remote = commands.add_parser("submit", parents=[common], allow_abbrev=False)
    remote.add_argument("--host", default=os.environ.get(ENDPOINT_ENV))
    remote.add_argument("--experiment", default="captcha-ocr")
    remote.add_argument("--namespace")
    remote.add_argument("--run-name")
    remote.add_argument("--wait", action="store_true")
    remote.add_argument("--timeout", type=int, default=6 * 3600, help="seconds, with --wait")
    return parser


def pipeline_options(module, args: argparse.Namespace):
    return module.PipelineOptions(
        params_path=args.params,
        mlflow_tracking_uri=checked_tracking_uri(
            args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        ),
        train_cpu=args.train_cpu,
        train_memory=args.train_memory,
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        mlflow_secret=args.mlflow_secret,
        source_secret=args.source_secret,
        param_overrides=tuple(args.param) if args.command == "compile" else (),
        storage_secret=args.storage_secret,
        storage_endpoint=checked_endpoint(args.storage_endpoint),
    )


def checked_endpoint(endpoint: str | None) -> str | None:
    """The object store's URL, which becomes pod environment: no credentials in it."""
    from urllib.parse import urlsplit

    if endpoint is None:
        return None
    parts = urlsplit(endpoint)
    # Credentials first: the other message quotes the value.
    if parts.username or parts.password or "@" in endpoint:
        raise PipelineError(
            "--storage-endpoint holds credentials, which would show in the pipeline spec; "
            "put them in a Kubernetes secret and pass --storage-secret NAME"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PipelineError(f"--storage-endpoint {endpoint!r}: expected http(s)://HOST[:PORT]")
    return endpoint


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.image:
        # Read when the components are defined, so before the pipeline is imported.
        os.environ["CAPTCHA_OCR_IMAGE"] = args.image
    module = load_pipeline_module()
    options = pipeline_options(module, args)
    if args.command != "run-local":  # a local run's parameters stay on this machine
        # With compile's --param overrides: they become the compiled defaults.
        defaults = module.default_params(options.params_path, options.param_overrides)
        check_source_is_public(defaults, str(args.params))
    {"compile": compile_command, "run-local": run_local_command, "submit": submit_command}[
        args.command
    ](module, options, args)


def compile_command(module, options, args: argparse.Namespace) -> None:
    path = compile_pipeline(module, options, args.output)
    print(f"compiled the pipeline to {path} (image {module.IMAGE})")


def run_local_command(module, options, args: argparse.Namespace) -> None:
    from captcha_ocr.tracking import tracking_uri

    uri = options.mlflow_tracking_uri or checked_tracking_uri(tracking_uri())
    arguments = local_run_arguments(module, options, args.param, uri, Path.cwd())
    run_local(module, options, arguments, args.pipeline_root)
    print(
        f"pipeline finished: artifacts under {args.pipeline_root}/, runs and models "
        f"in MLflow at {uri}"
    )


def submit_command(module, options, args: argparse.Namespace) -> None:
    if not args.host:
        raise PipelineError(f"--host is missing (or set {ENDPOINT_ENV})")
    if not options.mlflow_tracking_uri:
        raise PipelineError(
            "--mlflow-uri is missing (or set MLFLOW_TRACKING_URI): the pods need an "
            "MLflow server they can reach"
        )
    arguments = pipeline_arguments(module, options, args.param, options.mlflow_tracking_uri)
    check_source_is_public(arguments, "--param")
    submit(
        module,
        options,
        args.host,
        arguments,
        args.experiment,
        args.namespace,
        args.run_name,
        args.wait,
        args.timeout,
    )
