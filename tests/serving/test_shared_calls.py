"""Concurrent requests share network calls, and each gets its own answer (a real network)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OnnxReader
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
        self.reader, self.calls, self.threads = reader, [], set()

    def __call__(self, images: np.ndarray):
        self.calls.append(len(images))
        self.threads.add(threading.current_thread().name)
        return self.reader.read(images)


def read_together(shared: SharedCalls, requests: list[np.ndarray]) -> list:
    async def all_at_once():
        return await asyncio.gather(*(shared.read(r) for r in requests), return_exceptions=True)

    return asyncio.run(all_at_once())


@pytest.mark.parametrize("in_thread", [True, False])
def test_requests_that_arrive_together_share_calls_and_get_their_own_answers(
    reader, images, in_thread
):
    requests = [images[0:1], images[1:3], images[3:6], images[6:7], images[7:9], images[9:12]]
    network = Counted(reader)
    answers = read_together(SharedCalls(network, max_images=8, in_thread=in_thread), requests)
    # Whole requests in arrival order, up to 8 images a call: 1+2+3+1, then 2+3.
    assert network.calls == [7, 5]
    # In its own thread, or on the event loop's (a process with one core).
    assert [name.startswith("network") for name in network.threads] == [in_thread]
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


class RefusesBlank(Counted):
    """The reader, refusing any call that holds an all-black image, as a runtime
    refuses what it cannot read."""

    def __call__(self, images: np.ndarray):
        self.calls.append(len(images))
        if (images.reshape(len(images), -1).max(axis=1) == 0).any():
            raise ValueError("a blank image")
        return self.reader.read(images)


@pytest.mark.parametrize("in_thread", [True, False])
def test_a_request_the_network_refuses_fails_alone(reader, images, in_thread):
    requests = [images[0:2], np.zeros((1, 50, 200), np.uint8), images[2:3]]
    network = RefusesBlank(reader)
    answers = read_together(SharedCalls(network, in_thread=in_thread), requests)
    assert network.calls == [4, 2, 1, 1]  # together, then each alone
    assert isinstance(answers[1], ValueError)
    assert answers[0][0] == reader.read(images[0:2])[0]
    assert answers[2][0] == reader.read(images[2:3])[0]


class Gated(Counted):
    """The reader, holding each call until the test opens the gate."""

    def __init__(self, reader: OnnxReader):
        super().__init__(reader)
        self.gate = threading.Event()

    def __call__(self, images: np.ndarray):
        self.gate.wait(timeout=30)
        return super().__call__(images)


def test_a_client_that_left_is_not_read(reader, images):
    network = Gated(reader)
    shared = SharedCalls(network)

    async def one_leaves():
        first = asyncio.create_task(shared.read(images[0:1]))
        await asyncio.sleep(0.05)  # the first call is in the network, held at the gate
        leaving = asyncio.create_task(shared.read(images[1:3]))
        staying = asyncio.create_task(shared.read(images[3:4]))
        await asyncio.sleep(0.05)  # both wait for the next call
        leaving.cancel()
        network.gate.set()
        return await first, await staying

    first, staying = asyncio.run(one_leaves())
    assert network.calls == [1, 1]
    assert staying[0] == reader.read(images[3:4])[0]


class OneCallAtATime(RefusesBlank):
    """RefusesBlank, holding each call until the test lets it through."""

    def __init__(self, reader: OnnxReader):
        super().__init__(reader)
        self.turns = threading.Semaphore(0)

    def __call__(self, images: np.ndarray):
        self.turns.acquire(timeout=30)
        return super().__call__(images)


def test_a_client_that_left_during_a_refused_call_is_not_read_again(reader, images):
    network = OneCallAtATime(reader)
    shared = SharedCalls(network)

    async def one_leaves_then_the_call_fails():
        first = asyncio.create_task(shared.read(images[0:1]))
        await asyncio.sleep(0.05)  # the first call is in the network, held
        blank = asyncio.create_task(shared.read(np.zeros((1, 50, 200), np.uint8)))
        leaving = asyncio.create_task(shared.read(images[1:3]))
        staying = asyncio.create_task(shared.read(images[3:4]))
        await asyncio.sleep(0.05)  # the three wait for the next call
        network.turns.release()
        await first
        await asyncio.sleep(0.05)  # the three are in the network, held
        leaving.cancel()
        await asyncio.sleep(0.05)
        network.turns.release(3)  # the network refuses the three; then each alone
        return await asyncio.gather(blank, staying, return_exceptions=True)

    blank, staying = asyncio.run(one_leaves_then_the_call_fails())
    assert network.calls == [1, 4, 1, 1]  # the one that left is not read alone
    assert isinstance(blank, ValueError)
    assert staying[0] == reader.read(images[3:4])[0]


def test_requests_waiting_when_the_calls_are_stopped_get_an_error_not_a_hang(reader, images):
    network = Gated(reader)
    shared = SharedCalls(network)

    async def stopped():
        waiting = [asyncio.create_task(shared.read(images[i : i + 1])) for i in range(3)]
        await asyncio.sleep(0.05)  # one call in the network, held; two waiting
        assert shared._driver is not None
        shared._driver.cancel()  # as when the server shuts down
        network.gate.set()
        return await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 30)

    answers = asyncio.run(stopped())
    assert [type(a) for a in answers] == [RuntimeError] * 3
    assert all("the network call was stopped" in str(a) for a in answers)
