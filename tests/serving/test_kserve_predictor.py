"""The KServe predictor, for real, in the serving venv (no TensorFlow) on 127.0.0.1.

The registered model's files are downloaded as KServe's storage initializer
would put them in /mnt/models; the predictor serves them on the V2 protocol.
Real captchas in one batch, then bad payloads, then it still answers.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import io
import json
import struct
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from captcha_ocr import cli
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OnnxReader, OpenVinoReader
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.serving.uploads import MAX_BATCH, MAX_IMAGE_BYTES
from tests.helpers import free_port, stop, wait_until_up

from ..registry.conftest import register
from .serve_venv import run_in_venv, serve_env, serve_venv

pytestmark = pytest.mark.slow
NAME = "captcha-ocr"
PREDICTOR = ["-m", "captcha_ocr.serving.kserve_predictor"]


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def infer_body(
    values: list, name: str = "image", datatype: str = "BYTES", shape=None, **request
) -> bytes:
    tensor = {"name": name, "datatype": datatype, "shape": shape or [len(values)], "data": values}
    return json.dumps({**request, "inputs": [tensor]}).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def venv() -> Path:
    found = serve_venv()
    for heavy in ("tensorflow", "keras", "mlflow", "onnxruntime"):
        missing = run_in_venv(found, ["-c", f"import {heavy}"])
        assert missing.returncode != 0, f"the serving venv must not have {heavy}"
    return found


@pytest.fixture
def predictor(request, venv, store, reader_file, captcha_pngs, tmp_path):
    """The predictor's URL; ``indirect`` parametrization gives its options."""
    options = {"workers": 1, **getattr(request, "param", {})}
    # {"float_only": True}: the model of an export that did not keep the int8 copy.
    reader = request.getfixturevalue("float_only") if options.pop("float_only", 0) else reader_file
    version = register(reader, NAME, next(iter(captcha_pngs.values())), 0.9, 0.0)
    model_dir = mlflow.artifacts.download_artifacts(
        f"models:/{NAME}/{version}", dst_path=str(tmp_path / "mnt-models")
    )
    port = free_port()
    process = subprocess.Popen(
        [
            str(venv / "bin" / "python"),
            *PREDICTOR,
            "--model_name",
            NAME,
            "--model_dir",
            model_dir,
            "--http_port",
            str(port),
        ]
        + ["--host", "127.0.0.1"]
        + [f"--{option}={value}" for option, value in options.items()],
        env=serve_env(venv),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: kserve logs every request, and a full pipe would block it.
        stderr=(tmp_path / "predictor.log").open("w"),
        start_new_session=True,  # stop() ends its worker processes too
    )
    url = f"http://127.0.0.1:{port}"
    ready = f"{url}/v2/models/{NAME}/ready"
    log = (tmp_path / "predictor.log").read_text
    wait_until_up(lambda: call(ready)[0] == 200, process, "kserve predictor", log)
    yield url
    stop(process)


def test_v2_protocol_reads_a_batch_of_real_captchas(predictor, reader_file, captcha_pngs):
    status, metadata = call(f"{predictor}/v2/models/{NAME}")
    assert status == 200, metadata
    assert metadata["name"] == NAME
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in metadata["outputs"]] == ["text", "confidence"]

    pngs = list(captcha_pngs.values())[:8]
    body = infer_body(list(map(b64, pngs)), id="req-1")
    status, answer = call(f"{predictor}/v2/models/{NAME}/infer", body)
    assert status == 200, answer
    assert answer["model_name"] == NAME and answer["id"] == "req-1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["text"]["shape"] == [len(pngs)] and outputs["text"]["datatype"] == "BYTES"
    vocabulary = Vocabulary.load(reader_file.with_name("vocabulary.json"))
    direct = OpenVinoReader(reader_file.with_name("captcha_network_int8.onnx"), vocabulary)
    expected, confidence = direct.read(np.stack([decode_image(p, 50, 200) for p in pngs]))
    assert outputs["text"]["data"] == expected
    np.testing.assert_allclose(outputs["confidence"]["data"], confidence, rtol=1e-4)
    # [N, 1], as a client that sends a column sends it; and no id (it is optional).
    status, answer = call(
        f"{predictor}/v2/models/{NAME}/infer", infer_body([b64(pngs[0])], shape=[1, 1])
    )
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == [expected[0]] and answer["id"]
    # The protocol's binary extension is parsed by kserve's own route, not the
    # predictor's infer route: the same answer, field for field, but the id.
    _, answer = call(f"{predictor}/v2/models/{NAME}/infer", body)
    status, by_kserve = call_binary(f"{predictor}/v2/models/{NAME}/infer", list(map(b64, pngs)))
    assert status == 200, by_kserve
    assert {**by_kserve, "id": "req-1"} == answer
    # Every request read shows on kserve's /metrics: three through the infer route,
    # one through kserve's.
    with urllib.request.urlopen(f"{predictor}/metrics", timeout=60) as response:
        metrics = response.read().decode()
    assert f'request_predict_seconds_count{{model_name="{NAME}"}} 4.0' in metrics, metrics


def call_binary(url: str, values: list[str]) -> tuple[int, dict]:
    """POST in the V2 binary extension: a JSON header, then each BYTES element as a
    4-byte little-endian length and its bytes."""
    raw = b"".join(struct.pack("<I", len(v)) + v.encode() for v in values)
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(values)]}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]})
    request = urllib.request.Request(
        url,
        data=header.encode() + raw,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("predictor", [{"float_only": True}], indirect=True)
def test_a_float_only_model_reads_under_openvino_as_onnxruntime_reads_it(
    predictor, venv, float_only, captcha_pngs
):
    # The serving venv has one runtime (no onnxruntime: the venv fixture checks):
    # OpenVINO reads the float network too.
    pngs = list(captcha_pngs.values())[:8]
    status, answer = call(f"{predictor}/v2/models/{NAME}/infer", infer_body(list(map(b64, pngs))))
    assert status == 200, answer
    vocabulary = Vocabulary.load(float_only.with_name("vocabulary.json"))
    onnxruntime = OnnxReader(float_only.with_name("captcha_network.onnx"), vocabulary)
    expected, confidence = onnxruntime.read(np.stack([decode_image(p, 50, 200) for p in pngs]))
    assert any(expected)  # untrained weights read garbage: we compare that
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert outputs["text"] == expected
    np.testing.assert_allclose(outputs["confidence"], confidence, rtol=1e-4)


@pytest.mark.parametrize("predictor", [{"workers": 2}], indirect=True)
def test_two_worker_processes_read_concurrent_requests_alike(
    predictor, reader_file, captcha_pngs, tmp_path
):
    # Each worker is a spawned process that opens the network itself; concurrent
    # requests share network calls there. Every answer must still be its own.
    pngs = list(captcha_pngs.values())
    vocabulary = Vocabulary.load(reader_file.with_name("vocabulary.json"))
    direct = OpenVinoReader(reader_file.with_name("captcha_network_int8.onnx"), vocabulary)
    expected, _ = direct.read(np.stack([decode_image(p, 50, 200) for p in pngs]))
    infer = f"{predictor}/v2/models/{NAME}/infer"

    def read(i: int) -> tuple[int, dict]:
        return call(infer, infer_body([b64(pngs[i % len(pngs)])]))

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(read, range(60)))
    for i, (status, answer) in enumerate(answers):
        assert status == 200, answer
        assert answer["outputs"][0]["data"] == [expected[i % len(pngs)]]
    # Two workers were started. (kserve restarts one that has not answered its
    # parent's ping within 5 s; on a loaded machine that happens while it imports.)
    assert (tmp_path / "predictor.log").read_text().count("Started child process") == 2


def test_a_worker_that_reads_on_its_event_loop_compiles_those_sizes_before_it_answers(
    venv, store, reader_file, captcha_pngs, tmp_path
):
    # With one core each (2 workers on 2 cores), calls of up to 8 images read on
    # the event loop: a size compiled there on first use held probes for 0.15 s.
    version = register(reader_file, NAME, next(iter(captcha_pngs.values())), 0.9, 0.0)
    model_dir = mlflow.artifacts.download_artifacts(
        f"models:/{NAME}/{version}", dst_path=str(tmp_path / "mnt-models")
    )
    script = (
        "import sys\n"
        "from unittest import mock\n"
        "import captcha_ocr.serving.kserve_predictor as kp\n"
        "for workers in (1, 2):\n"
        "    with mock.patch.object(kp, 'available_cores', return_value=2):\n"
        "        predictor = kp.CaptchaPredictor('m', sys.argv[1], workers)\n"
        "    predictor.load()\n"
        "    print(workers, predictor.inline_images, sorted(predictor.reader._requests))\n"
    )
    done = run_in_venv(venv, ["-c", script, model_dir], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["1 0 [1]", "2 8 [1, 2, 4, 8]"]


def test_bad_payloads_are_400s_that_name_the_problem(predictor, captcha_pngs):
    png = b64(next(iter(captcha_pngs.values())))
    infer = f"{predictor}/v2/models/{NAME}/infer"
    bad = {
        "row 0: not valid base64": infer_body(["@@@ not base64 @@@"]),
        "row 1: not a readable image": infer_body([png, b64(b"plain text")]),
        "expected one input 'image'": infer_body([png], name="picture"),
        "datatype FP32, expected BYTES": infer_body([1.0], datatype="FP32"),
        "shape says 3 images, data holds 1": infer_body([png], shape=[3]),
        "empty batch": infer_body([], shape=[0]),
        f"limit {MAX_BATCH}": infer_body([png] * (MAX_BATCH + 1)),
        f"limit {MAX_IMAGE_BYTES}": infer_body([b64(b"\0" * (MAX_IMAGE_BYTES + 1))]),
    }
    for message, body in bad.items():
        status, answer = call(infer, body)
        assert status == 400, (message, status, answer)
        assert message in answer.get("error", ""), (message, answer)
    # kserve itself answers these 422 with pydantic's details; the infer route, 400.
    status, answer = call(infer, b"{not json")
    assert status == 400 and "the body is not JSON" in answer["error"], answer
    status, answer = call(infer, b'{"inputs": {}}')
    assert status == 400 and "expected a V2 inference request" in answer["error"], answer
    assert call(f"{predictor}/v2/models/nobody/ready")[0] == 404
    # Still serving after all that.
    status, answer = call(infer, infer_body([png]))
    assert status == 200, answer
    # A photo-sized image (over INLINE_PIXELS: decoded in a thread) is read all the same.
    photo = io.BytesIO()
    Image.new("RGB", (2000, 1000), (250, 250, 250)).save(photo, format="PNG")
    status, answer = call(infer, infer_body([b64(photo.getvalue()), png]))
    assert status == 200 and answer["outputs"][0]["shape"] == [2], answer
    # Unloaded through the repository API: the infer route answers as kserve would.
    assert call(f"{predictor}/v2/repository/models/{NAME}/unload", b"")[0] == 200
    status, answer = call(infer, infer_body([png]))
    assert (status, answer) == (503, {"error": f"Model with name {NAME} is not ready."})


def post_chunked(url: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST with no Content-Length: the body arrives in chunks of undeclared total."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", parts.path, iter(chunks), headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "predictor",
    [{"max_request_bytes": 30_000}, {"max_request_bytes": 30_000, "workers": 2}],
    indirect=True,
    ids=["1 worker", "2 workers"],
)
def test_a_body_over_the_limit_is_a_413_and_one_under_it_is_read(predictor, captcha_pngs):
    png = b64(next(iter(captcha_pngs.values())))
    infer = f"{predictor}/v2/models/{NAME}/infer"
    small, big = infer_body([png]), infer_body([png] * 4)
    assert len(small) < 30_000 < len(big)
    for _ in range(4):  # the kernel hands connections to either worker
        status, answer = call(infer, big)
        assert status == 413, answer
        assert f"request of {len(big)} bytes, limit 30000" in answer["error"]
        status, answer = post_chunked(infer, [big[:20_000], big[20_000:]])
        assert status == 413, answer
        assert "request of more than 30000 bytes" in answer["error"]
    # Under the limit, declared or chunked, the body reaches the predictor whole.
    declared = call(infer, small)
    chunked = post_chunked(infer, [small[:5_000], small[5_000:]])
    assert declared[0] == chunked[0] == 200, (declared, chunked)
    assert declared[1]["outputs"] == chunked[1]["outputs"]


def test_a_mistyped_option_stops_the_predictor_before_it_serves(venv, tmp_path):
    port = str(free_port())
    done = run_in_venv(venv, [*PREDICTOR, "--model-dir", str(tmp_path), "--http_port", port])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unrecognized arguments: --model-dir" in done.stderr
    done = run_in_venv(
        venv, [*PREDICTOR, "--model_dir", str(tmp_path), "--max_request_bytes", "-1"]
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "-1: must be at least 1" in done.stderr


def test_a_worker_that_cannot_open_the_network_exits_for_kserve_to_restart(venv, tmp_path):
    # A worker is the predictor unpickled in a spawned process; one that stayed up
    # without its network would answer 500 to every request sent its way.
    script = (
        "import pickle\n"
        "from captcha_ocr.serving.kserve_predictor import CaptchaPredictor\n"
        f"predictor = CaptchaPredictor('{NAME}', {str(tmp_path / 'gone')!r})\n"
        "predictor.ready = True\n"
        "worker = pickle.loads(pickle.dumps(predictor))\n"
        "worker.opening.join(120)\n"
        "print('still up')\n"
    )
    done = run_in_venv(venv, ["-c", script], timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "still up" not in done.stdout
    assert "could not open the network" in done.stdout
    assert str(tmp_path / "gone") in done.stderr  # the reason, in the traceback


def test_a_project_command_in_the_serving_venv_says_where_to_run_it(venv, tmp_path):
    # The serving venv holds the predictor alone: no MLflow, TensorFlow or DVC.
    for command in (["deploy", "kserve"], ["predict", "--help"]):
        done = run_in_venv(venv, ["-m", "captcha_ocr", *command], cwd=tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "which this Python environment lacks: run it from the project venv" in done.stderr
        assert "Traceback" not in done.stderr
    # The list of what only the project venv has holds for both venvs.
    for module in sorted(cli.PROJECT_ONLY):
        assert importlib.util.find_spec(module) is not None, module
        assert run_in_venv(venv, ["-c", f"import {module}"]).returncode != 0, module
