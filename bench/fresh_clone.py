"""A teammate's fresh clone: how long `dvc pull && dvc repro` takes, and that it trains nothing.

    python bench/fresh_clone.py [--clones 3] [--images 80]

Sets up what docs/team.md describes, on loopback: a bucket (moto's S3 server,
a stand-in for S3), an `mlflow server` (sqlite backend, proxied artifacts; the
PostgreSQL one is in tests/team), and a project trained with the tests' tiny
params, its `dvc.lock` committed and its outputs pushed. Then, for each of
``--clones`` fresh clones: `git clone`, `dvc pull`, `dvc repro`, each timed.
The target: `dvc pull && dvc repro` within 15 s on 2 cores, no stage but
`register` run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import DEFAULT_DATA  # noqa: E402
from tests.dvc_project import commit, dvc, make_project, small_zip  # noqa: E402
from tests.helpers import tiny_params  # noqa: E402
from tests.mlflow_server import start_tracking_server  # noqa: E402
from tests.s3_stand_in import S3StandIn  # noqa: E402

STAGES = ("ingest", "preprocess", "train", "evaluate", "export", "register", "promote")


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clones", type=int, default=3)
    parser.add_argument("--images", type=int, default=80)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3 = S3StandIn(f"http://{host}:{port}")
    s3.client().create_bucket(Bucket="team")
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        (base / "server").mkdir()
        server, url = start_tracking_server(base / "server")
        try:
            zip_path = small_zip(base / "captchas.zip", DEFAULT_DATA, args.images)
            alice = base / "alice"
            env = make_project(alice, zip_path)
            tiny_params(alice / "params.yaml", epochs=1)
            env |= {k: v for k, v in s3.env().items() if k != "AWS_ENDPOINT_URL"}
            env["MLFLOW_TRACKING_URI"] = url
            remote = ["dvc", "remote"]
            add = [*remote, "add", "-d", "storage", "s3://team/dvc"]
            subprocess.run(add, cwd=alice, env=env, check=True)
            local = [*remote, "modify", "--local", "storage", "endpointurl", s3.endpoint]
            subprocess.run(local, cwd=alice, env=env, check=True)
            subprocess.run(["git", "init", "-q", "--bare", str(base / "origin.git")], env=env)
            origin = ["git", "remote", "add", "origin", str(base / "origin.git")]
            subprocess.run(origin, cwd=alice, env=env, check=True)
            dvc(alice, env, "repro")
            commit(alice, env, "dvc.lock")
            dvc(alice, env, "push")
            push = ["git", "push", "-q", "origin", "HEAD:main"]
            subprocess.run(push, cwd=alice, env=env, check=True)
            print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.images} images")
            print("clone  dvc pull  dvc repro  total  stages run")
            for n in range(args.clones):
                bob = base / f"bob{n}"
                clone = ["git", "clone", "-q", "-b", "main", str(base / "origin.git"), str(bob)]
                subprocess.run(clone, env=env, check=True)
                subprocess.run(local, cwd=bob, env=env, check=True)
                pull, _ = timed(["dvc", "pull"], bob, env)
                repro, output = timed(["dvc", "repro"], bob, env)
                ran = [s for s in STAGES if f"Running stage '{s}'" in output]
                print(f"{n:>5}  {pull:>7.1f}s  {repro:>8.1f}s  {pull + repro:>4.1f}s  {ran}")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            moto.stop()


if __name__ == "__main__":
    main()
