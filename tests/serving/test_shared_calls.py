"""Concurrent requests share network calls, and each gets its own answer (a real network);
the network gets the cores a container may use."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OnnxReader, available_cores
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.serving.shared_calls import SharedCalls


@pytest.fixture(scope="module")
def reader(reader_file) -> OnnxReader:
    folder = reader_file.parent
    return OnnxReader(folder / "captcha_network.onnx", Vocabulary.load(folder / "vocabulary.json"))


@pytest.fixture
def images(captcha_pngs) -> np.ndarray:
    return np.stack([decode_image(png, 50, 200) for png in captcha_pngs.values()])


class Counted:
    """The reader's ``read``, noting how many images each network call got."""

    def __init__(self, reader: OnnxReader):
        self.reader, self.calls = reader, []

    def __call__(self, images: np.ndarray):
        self.calls.append(len(images))
        return self.reader.read(images)


def read_together(shared: SharedCalls, requests: list[np.ndarray]) -> list:
    async def all_at_once():
        return await asyncio.gather(*(shared.read(r) for r in requests), return_exceptions=True)

    return asyncio.run(all_at_once())


def test_requests_that_arrive_together_share_calls_and_get_their_own_answers(reader, images):
    requests = [images[0:1], images[1:3], images[3:6], images[6:7], images[7:9], images[9:12]]
    network = Counted(reader)
    answers = read_together(SharedCalls(network, max_images=8), requests)
    # Whole requests in arrival order, up to 8 images a call: 1+2+3+1, then 2+3.
    assert network.calls == [7, 5]
    for request, (texts, confidence) in zip(requests, answers, strict=True):
        alone_texts, alone_confidence = reader.read(request)
        assert texts == alone_texts
        np.testing.assert_allclose(confidence, alone_confidence, rtol=1e-4)


def test_a_lone_client_waits_for_nobody(reader, images):
    network = Counted(reader)
    shared = SharedCalls(network)

    async def one_after_another():
        return [await shared.read(images[i : i + 1]) for i in range(3)]

    answers = asyncio.run(one_after_another())
    assert network.calls == [1, 1, 1]
    assert [texts for texts, _ in answers] == [reader.read(images[i : i + 1])[0] for i in range(3)]


def test_a_request_the_network_refuses_fails_alone(reader, images):
    wrong_size = np.zeros((1, 40, 200), np.uint8)
    requests = [images[0:2], wrong_size, images[2:3]]
    answers = read_together(SharedCalls(Counted(reader)), requests)
    assert isinstance(answers[1], Exception)
    assert answers[0][0] == reader.read(images[0:2])[0]
    assert answers[2][0] == reader.read(images[2:3])[0]


@pytest.mark.parametrize(
    ("cpu_max", "limit"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1)]
)
def test_network_threads_count_the_cores_a_container_may_use(tmp_path, cpu_max, limit):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text(cpu_max)
    expected = affinity if limit is None else min(affinity, limit)
    assert available_cores(tmp_path / "cpu.max") == expected
    assert available_cores(tmp_path / "no-such-file") == affinity
