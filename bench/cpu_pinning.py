"""Two processes reading at once, with OpenVINO's threads pinned to cores and floating.

    python bench/cpu_pinning.py [--seconds 4]

Builds the shipped network untrained and its int8 copy
(``serve_load.export_untrained``, as ``--fresh-registry`` does), then reads one captcha at a time
on 1 thread (``OpenVinoReader(threads=1)``, as each KServe worker does on 2
cores): one process alone, then two processes at once (as kserve's
``--workers 2``), each way pinned and floating. Prints reads/s and the cores
each process used. Two processes that pin their threads pick the same core.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from serve_load import captcha_pngs, export_untrained


def read_on(network: str, vocabulary: str, pin: bool, seconds: float, ready, go, results) -> None:
    import numpy as np

    from captcha_ocr.core.images import decode_image
    from captcha_ocr.core.runtimes import OpenVinoReader
    from captcha_ocr.core.vocabulary import Vocabulary

    reader = OpenVinoReader(network, Vocabulary.load(vocabulary), threads=1, pin_threads=pin)
    image = np.stack([decode_image(captcha_pngs(1)[0], 50, 200)])
    for _ in range(50):  # compiled and warm before the clock starts
        reader.read(image)
    ready.put(True)
    go.wait()
    reads, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        reader.read(image)
        reads += 1
    elapsed = time.perf_counter() - started
    results.put((reads / elapsed, (time.process_time() - cpu) / elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4)
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")  # fresh processes, as kserve's workers
    with tempfile.TemporaryDirectory(prefix="cpu-pinning-") as scratch:
        folder = Path(scratch)
        export_untrained(folder, captcha_pngs())
        network = str(folder / "captcha_network_int8.onnx")
        vocabulary = str(folder / "vocabulary.json")
        for pin in (True, False):
            for processes in (1, 2):
                ready, go, results = spawn.Queue(), spawn.Event(), spawn.Queue()
                workers = [
                    spawn.Process(
                        target=read_on,
                        args=(network, vocabulary, pin, args.seconds, ready, go, results),
                    )
                    for _ in range(processes)
                ]
                for worker in workers:
                    worker.start()
                for _ in workers:  # each has compiled the network and read with it
                    ready.get(timeout=300)
                go.set()
                each = [results.get(timeout=120) for _ in workers]
                for worker in workers:
                    worker.join()
                print(
                    f"{'pinned' if pin else 'floating'}, {processes} process(es) at once: "
                    + ", ".join(f"{rate:.0f} reads/s on {cores:.2f} cores" for rate, cores in each)
                )


if __name__ == "__main__":
    main()
