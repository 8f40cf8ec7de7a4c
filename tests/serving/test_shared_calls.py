"""Concurrent requests share network calls, and each gets its own answer (a real network)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.runtimes import OnnxReader
from captcha_ocr.core.vocabulary import Vocabulary
from captcha_ocr.serving.shared_calls import INLINE_IMAGES, SharedCalls, split_cores


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


@pytest.mark.parametrize(("inline_images", "threads"), [(0, [True]), (6, [True, False])])
def test_requests_that_arrive_together_share_calls_and_get_their_own_answers(
    reader, images, inline_images, threads
):
    requests = [images[0:1], images[1:3], images[3:6], images[6:7], images[7:9], images[9:12]]
    network = Counted(reader)
    shared = SharedCalls(network, max_images=8, inline_images=inline_images)
    answers = read_together(shared, requests)
    # Whole requests in arrival order, up to 8 images a call: 1+2+3+1, then 2+3.
    assert network.calls == [7, 5]
    # In the network's thread, or a call of up to inline_images on the event loop's.
    assert sorted(name.startswith("network") for name in network.threads) == sorted(threads)
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


@pytest.mark.parametrize("inline_images", [0, INLINE_IMAGES])
def test_a_request_the_network_refuses_fails_alone(reader, images, inline_images):
    requests = [images[0:2], np.zeros((1, 50, 200), np.uint8), images[2:3]]
    network = RefusesBlank(reader)
    answers = read_together(SharedCalls(network, inline_images=inline_images), requests)
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


def test_on_the_event_loop_each_call_is_answered_before_the_next_starts(reader, images):
    # A call on the loop holds it; what waits (the answers just set, a probe)
    # goes before the next call, not after all of them.
    events: list[tuple[str, int]] = []

    def read(batch: np.ndarray):
        events.append(("call", len(batch)))
        return reader.read(batch)

    shared = SharedCalls(read, max_images=4, inline_images=4)

    async def client(i: int) -> None:
        await shared.read(images[4 * i : 4 * i + 4])
        events.append(("answer", i))

    async def three_at_once() -> None:
        await asyncio.gather(*(client(i) for i in range(3)))

    asyncio.run(three_at_once())
    assert events == [
        ("call", 4),
        ("answer", 0),
        ("call", 4),
        ("answer", 1),
        ("call", 4),
        ("answer", 2),
    ]


@pytest.mark.parametrize(
    ("cores", "workers", "plan"),
    [
        (2, 1, (1, 0)),
        (2, 2, (1, INLINE_IMAGES)),
        (4, 2, (1, 0)),
        (8, 2, (3, 0)),
        (1, 1, (1, INLINE_IMAGES)),
        (3, 2, (1, INLINE_IMAGES)),
    ],
)
def test_each_worker_gets_its_share_of_the_cores_less_one_for_its_event_loop(cores, workers, plan):
    # (network threads, images a call may read on the event loop)
    assert split_cores(cores, workers) == plan
