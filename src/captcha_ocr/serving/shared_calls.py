"""Concurrent requests share network calls.

A server that reads each request's images with its own network call pays the
network's fixed cost once per request: one image at a time, the int8 network
reads about 1000 images/s on 2 cores, a batch of 16 well over twice that. Here
one network call runs at a time, in a worker thread (OpenVINO and onnxruntime
let go of the GIL while they compute), so the event loop goes on decoding the
requests that arrive meanwhile. When the call ends, all of them go into the
next one. Nothing waits on purpose: a lone client sees one call per request, as
before, and a busy server's calls grow with its load.

A process with one core to itself (kserve's ``--workers 2`` on 2 cores) reads
small calls on the event loop instead (``inline_images``): a thread would only
take turns with the loop on that core, and each hand-over between them costs
the loop a wake-up. The loop is held while such a call reads (8 images, about
4 ms of the int8 network here) and answers what waits between two calls;
larger calls still go to the thread. The requests already waiting when a call
starts still share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

Read = Callable[[np.ndarray], tuple[list[str], np.ndarray]]
# Calls up to this many images read on the event loop of a process with one core.
INLINE_IMAGES = 8


def split_cores(cores: int, workers: int) -> tuple[int, int]:
    """(network threads, ``inline_images``) for each of ``workers`` processes on
    ``cores``: its share of the cores less one (at least one) for its event loop,
    which parses and decodes requests while the network computes; a process with
    one core reads small calls on its event loop."""
    each = cores // workers
    return max(1, each - 1), INLINE_IMAGES if each <= 1 else 0


class SharedCalls:
    """``await calls.read(images)`` reads like ``read(images)``, sharing network calls."""

    def __init__(self, read: Read, max_images: int = 64, inline_images: int = 0):
        self._read = read
        self._max_images = max_images
        self._inline_images = inline_images
        self._waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self._driver: asyncio.Task | None = None
        # One thread: the network runs one call at a time, on every core it is given.
        self._network = ThreadPoolExecutor(1, thread_name_prefix="network")

    async def read(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((images, answer))
        if self._driver is None:
            self._driver = asyncio.create_task(self._drive())
        return await answer

    def _next_call(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """Whole requests in arrival order, up to ``max_images`` (at least one request).
        Requests whose client has left (their answer cancelled) are dropped."""
        self._waiting = [
            (request, answer) for request, answer in self._waiting if not answer.done()
        ]
        taken, images = 0, 0
        for request, _ in self._waiting:
            if taken and images + len(request) > self._max_images:
                break
            taken, images = taken + 1, images + len(request)
        call, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return call

    async def _drive(self) -> None:
        call: list[tuple[np.ndarray, asyncio.Future]] = []
        try:
            while self._waiting:
                call = self._next_call()
                if call:
                    await self._call(call)
                    await asyncio.sleep(0)  # what waits on the loop goes first (probes, answers)
        except BaseException as err:  # cancelled (the server stops): nobody waits forever
            for _, answer in call + self._waiting:
                if not answer.done():
                    answer.set_exception(RuntimeError(f"the network call was stopped: {err!r}"))
            self._waiting = []
            raise
        finally:
            self._driver = None

    async def _call(self, call: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            images = np.concatenate([request for request, _ in call])
            if len(images) <= self._inline_images:
                texts, confidence = self._read(images)
            else:
                texts, confidence = await loop.run_in_executor(self._network, self._read, images)
        except Exception as err:
            if len(call) == 1:
                answer = call[0][1]
                if not answer.done():
                    answer.set_exception(err)
                return
            for alone in call:  # one bad request fails alone, the others are read
                if not alone[1].done():  # not a client that left meanwhile
                    await self._call([alone])
            return
        start = 0
        for request, answer in call:
            end = start + len(request)
            if not answer.done():  # a client that left has cancelled its answer
                answer.set_result((texts[start:end], confidence[start:end]))
            start = end
