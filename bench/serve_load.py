"""Load on the served model: N concurrent clients on loopback for a bounded time.

    python bench/serve_load.py [--clients 4] [--seconds 20] [--batch 1]
                               [--model-uri models:/captcha-ocr@champion | --fresh-registry]
                               [--url http://127.0.0.1:PORT]

Starts ``mlflow models serve`` of the registered reader on 127.0.0.1 (or uses
the server at ``--url``), lets each client post real captchas (base64 PNG,
``--batch`` per request) back to back for ``--seconds``, and prints requests/s,
images/s, p50/p90/p99 latency and the error count in one run. Exits 1 on any
error.

``--model-uri`` defaults to the champion in ``$MLFLOW_TRACKING_URI`` (or
``mlflow.db`` here, as after ``dvc repro``). ``--fresh-registry`` registers an
untrained reader of the default architecture in a temporary store instead: the
same network, so the same cost per image, with no trained model needed.
Captchas come from ``data/raw/images`` or the dataset zip (``$CAPTCHA_OCR_DATA``,
default ``../shared/data/captcha_images_v2.zip``).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
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


def captcha_pngs(count: int = 64) -> list[bytes]:
    local = sorted((PROJECT / "data/raw/images").rglob("*.png"))[:count]
    if local:
        return [p.read_bytes() for p in local]
    default = PROJECT.parent / "shared/data/captcha_images_v2.zip"
    archive = Path(os.environ.get("CAPTCHA_OCR_DATA", default))
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))[:count]
        return [z.read(n) for n in names]


def fresh_registry(folder: Path, pngs: list[bytes]) -> str:
    """Register an untrained default-architecture reader; return its model URI."""
    import mlflow

    from captcha_ocr import tracking
    from captcha_ocr.config import TrainParams
    from captcha_ocr.core.model import build_reader, build_training_model
    from captcha_ocr.core.vocabulary import Vocabulary
    from captcha_ocr.registry import register_reader

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "serve-load"
    tracking.use_experiment()
    vocabulary = Vocabulary("2345678bcdefgmnpwxy")
    network = build_training_model(TrainParams(), 50, 200, vocabulary.num_classes)
    reader_path = folder / "captcha_reader.keras"
    build_reader(network, vocabulary).save(reader_path)
    with mlflow.start_run():
        metrics = {"test_exact_match": 0.0, "test_cer": 1.0}
        tags = {"note": "untrained, for load tests"}
        version = register_reader(reader_path, "serve-load", metrics, tags, pngs[0])
    return f"models:/serve-load/{version.version}"


def start_server(model_uri: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = dict(os.environ, PATH=f"{mlflow_cli.parent}{os.pathsep}{os.environ['PATH']}")
    command = [str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"mlflow models serve exited: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("mlflow models serve did not answer /ping within 180 s")


def payload(pngs: list[bytes], start: int, batch: int) -> bytes:
    rows = [[base64.b64encode(pngs[(start + i) % len(pngs)]).decode()] for i in range(batch)]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def client(url: str, bodies: list[bytes], until: float, out: list, errors: list) -> None:
    """Post back to back on one keep-alive connection until ``until``."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    i = 0
    while time.monotonic() < until:
        body = bodies[i % len(bodies)]
        i += 1
        started = time.perf_counter()
        try:
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            ok = response.status == 200 and "predictions" in json.loads(answer)
        except (OSError, http.client.HTTPException, ValueError) as err:
            ok, answer = False, repr(err).encode()
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        out.append(time.perf_counter() - started)
        if not ok:
            errors.append(answer[:200])
    connection.close()


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
    args = parser.parse_args()

    pngs = captcha_pngs()
    bodies = [payload(pngs, i * args.batch, args.batch) for i in range(len(pngs))]
    server = None
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        url, model_uri = args.url, args.model_uri
        if url is None:
            if args.fresh_registry:
                model_uri = fresh_registry(Path(scratch), pngs)
            server, url = start_server(model_uri)
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
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        finally:
            if server is not None:  # the whole group: the server's workers too
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)

    every = [t for per_client in latencies for t in per_client]
    ms = [t * 1000 for t in every]
    print(f"served {model_uri} at {url} ({'started here' if server else 'given'})")
    print(f"{args.clients} clients, {args.batch} image(s) per request, {elapsed:.1f} s")
    print(
        f"requests {len(every)}, errors {len(errors)}, "
        f"{len(every) / elapsed:.1f} req/s, {len(every) * args.batch / elapsed:.1f} img/s"
    )
    print(
        f"latency ms: p50 {percentile(ms, 50):.1f}, p90 {percentile(ms, 90):.1f}, "
        f"p99 {percentile(ms, 99):.1f}, max {max(ms, default=0):.1f}"
    )
    if errors:
        print(f"first error: {errors[0]!r}")
        sys.exit(1)


if __name__ == "__main__":
    main()
