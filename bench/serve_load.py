"""Load on the served model: N concurrent clients on loopback for a bounded time.

    python bench/serve_load.py [--clients 4] [--seconds 20] [--batch 1] [--workers 1]
                               [--model-uri models:/captcha-ocr@champion | --fresh-registry]
                               [--url http://127.0.0.1:PORT] [--kserve-python PYTHON]

Starts ``mlflow models serve`` of the registered reader on 127.0.0.1 (or uses
the server at ``--url``; with ``--kserve-python .venv-serve/bin/python`` the
KServe predictor on the V2 protocol instead), lets each client post real captchas (base64 PNG,
``--batch`` per request) back to back for ``--seconds``, and prints requests/s,
images/s, p50/p90/p99 latency and the error count in one run. Exits 1 on any
error.

``--model-uri`` defaults to the champion in ``$MLFLOW_TRACKING_URI`` (or
``mlflow.db`` here, as after ``dvc repro``). ``--fresh-registry`` registers an
untrained reader of the shipped network (``TrainParams()``, the params.yaml
defaults) in a temporary store instead, with its ONNX and int8 networks: the
same cost per image as a trained one, with no trained model needed.
Captchas come from ``data/raw/images`` or the dataset zip (``$CAPTCHA_OCR_DATA``,
default ``../shared/data/captcha_images_v2.zip``).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
KSERVE_NAME = "captcha-ocr"
V2_SUFFIX = "#v2"  # a URL that ends so is a KServe predictor: the clients speak V2


def captcha_pngs(count: int = 64) -> list[bytes]:
    local = sorted((PROJECT / "data/raw/images").rglob("*.png"))[:count]
    if local:
        return [p.read_bytes() for p in local]
    default = PROJECT.parent / "shared/data/captcha_images_v2.zip"
    archive = Path(os.environ.get("CAPTCHA_OCR_DATA", default))
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))[:count]
        return [z.read(n) for n in names]


def export_untrained(folder: Path, pngs: list[bytes]) -> Path:
    """The shipped network (``TrainParams()``, the params.yaml defaults), untrained,
    as export writes it into ``folder``: ``captcha_reader.keras``,
    ``captcha_network.onnx``, ``captcha_network_int8.onnx`` (calibrated on
    ``pngs``) and ``vocabulary.json``. Returns the reader's path. It reads noise,
    at the cost of a trained one."""
    import numpy as np

    from captcha_ocr.config import TrainParams
    from captcha_ocr.core.images import decode_image
    from captcha_ocr.core.model import build_reader, build_training_model
    from captcha_ocr.core.runtimes import export_onnx, quantize_onnx
    from captcha_ocr.core.vocabulary import Vocabulary

    vocabulary = Vocabulary("2345678bcdefgmnpwxy")
    params = TrainParams()
    print(f"the shipped network, untrained: {params.conv_filters} conv, {params.sequence}")
    network = build_training_model(params, 50, 200, vocabulary.num_classes)
    reader_path = folder / "captcha_reader.keras"
    build_reader(network, vocabulary).save(reader_path)
    export_onnx(network, folder / "captcha_network.onnx")
    vocabulary.save(folder / "vocabulary.json")
    calibration = np.stack([decode_image(png, 50, 200) for png in pngs])
    int8 = folder / "captcha_network_int8.onnx"
    quantize_onnx(folder / "captcha_network.onnx", int8, calibration)
    return reader_path


def fresh_registry(folder: Path, pngs: list[bytes]) -> str:
    """Register ``export_untrained``'s reader with its ONNX and int8 networks in a
    store in ``folder``; return its model URI."""
    import mlflow

    from captcha_ocr import tracking
    from captcha_ocr.registry import register_reader

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "serve-load"
    tracking.use_experiment()
    reader_path = export_untrained(folder, pngs)
    with mlflow.start_run():
        metrics = {"test_exact_match": 0.0, "test_cer": 1.0}
        tags = {"note": "untrained, for load tests"}
        version = register_reader(reader_path, "serve-load", metrics, tags, pngs[0])
    return f"models:/serve-load/{version.version}"


def start_server(
    model_uri: str, workers: int, kserve_python: str | None, scratch: Path
) -> tuple[subprocess.Popen, str]:
    """``mlflow models serve`` of the model, or with ``kserve_python`` (a serving venv's
    python) the KServe predictor on its files, downloaded as KServe's storage
    initializer would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = dict(os.environ, PATH=f"{mlflow_cli.parent}{os.pathsep}{os.environ['PATH']}")
    command = [str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["-w", str(workers), "-h", "127.0.0.1", "-p", str(port)]
    if kserve_python:
        import mlflow

        model_dir = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(scratch / "mnt"))
        command = [kserve_python, "-m", "captcha_ocr.serving.kserve_predictor"]
        command += ["--model_name", KSERVE_NAME, "--model_dir", model_dir]
        command += ["--http_port", str(port), "--host", "127.0.0.1", "--workers", str(workers)]
        env = dict(os.environ, PYTHONPATH=str(PROJECT / "src"))
    log_path = scratch / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: a server that logs each request (kserve does) would
        # block once nobody reads a full pipe.
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited: {log_path.read_text()[-2000:]}")
        try:
            ping = f"{url}/v2/models/{KSERVE_NAME}/ready" if kserve_python else f"{url}/ping"
            with urllib.request.urlopen(ping, timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("mlflow models serve did not answer /ping within 180 s")


def payload(pngs: list[bytes], start: int, batch: int, v2: bool = False) -> bytes:
    rows = [[base64.b64encode(pngs[(start + i) % len(pngs)]).decode()] for i in range(batch)]
    if v2:  # the V2 inference protocol, as the KServe predictor reads it
        tensor = {"name": "image", "datatype": "BYTES", "shape": [batch, 1], "data": rows}
        return json.dumps({"inputs": [tensor]}).encode()
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def client(url: str, bodies: list[bytes], until: float, out: list, errors: list) -> None:
    """Post back to back on one keep-alive connection until ``until``."""
    path, answered = "/invocations", "predictions"
    if url.endswith(V2_SUFFIX):
        url, path, answered = url[: -len(V2_SUFFIX)], f"/v2/models/{KSERVE_NAME}/infer", "outputs"
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    i = 0
    while time.monotonic() < until:
        body = bodies[i % len(bodies)]
        i += 1
        started = time.perf_counter()
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            ok = response.status == 200 and answered in json.loads(answer)
        except (OSError, http.client.HTTPException, ValueError) as err:
            ok, answer = False, repr(err).encode()
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        out.append(time.perf_counter() - started)
        if not ok:
            errors.append(answer[:200])
    connection.close()


def group_cpu_seconds(group: int) -> float:
    """User and system CPU seconds of the live processes in a process group (Linux)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--model-uri", default="models:/captcha-ocr@champion")
    parser.add_argument("--fresh-registry", action="store_true")
    parser.add_argument("--url", help="an already running scoring server")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument(
        "--kserve-python",
        help="serve with the KServe predictor, run by this python (a serving venv's)",
    )
    args = parser.parse_args()

    pngs = captcha_pngs()
    v2 = bool(args.kserve_python)
    bodies = [payload(pngs, i * args.batch, args.batch, v2) for i in range(len(pngs))]
    server = None
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        url, model_uri = args.url, args.model_uri
        if url is None:
            if args.fresh_registry:
                model_uri = fresh_registry(Path(scratch), pngs)
            server, url = start_server(model_uri, args.workers, args.kserve_python, Path(scratch))
        if v2:
            url += V2_SUFFIX
        try:
            warm: list[float] = []
            client(url, bodies[:1], time.monotonic() + 2, warm, [])  # first calls trace graphs
            latencies: list[list[float]] = [[] for _ in range(args.clients)]
            errors: list[bytes] = []
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(url, bodies, until, latencies[i], errors))
                for i in range(args.clients)
            ]
            server_cpu = group_cpu_seconds(server.pid) if server else 0.0
            client_cpu = own_cpu_seconds()
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            client_cpu = own_cpu_seconds() - client_cpu
            if server is not None:
                server_cpu = group_cpu_seconds(server.pid) - server_cpu
        finally:
            if server is not None:  # the whole group: the server's workers too
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:  # kserve waits out a grace period
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(timeout=30)

    every = [t for per_client in latencies for t in per_client]
    ms = [t * 1000 for t in every]
    what = "KServe predictor" if v2 else f"mlflow models serve -w {args.workers}"
    print(f"served {model_uri} by {what} at {url} ({'started here' if server else 'given'})")
    print(f"{args.clients} clients, {args.batch} image(s) per request, {elapsed:.1f} s")
    print(
        f"requests {len(every)}, errors {len(errors)}, "
        f"{len(every) / elapsed:.1f} req/s, {len(every) * args.batch / elapsed:.1f} img/s"
    )
    print(
        f"latency ms: p50 {percentile(ms, 50):.1f}, p90 {percentile(ms, 90):.1f}, "
        f"p99 {percentile(ms, 99):.1f}, max {max(ms, default=0):.1f}"
    )
    if server is not None and every:
        # Where the 2 shared cores go: the server's processes (every worker and
        # thread) and these client threads, per request.
        print(
            f"cpu ms/request: server {server_cpu * 1000 / len(every):.2f}, "
            f"client {client_cpu * 1000 / len(every):.2f} "
            f"(cores busy: {server_cpu / elapsed:.2f} + {client_cpu / elapsed:.2f})"
        )
    if errors:
        print(f"first error: {errors[0]!r}")
        sys.exit(1)


if __name__ == "__main__":
    main()
