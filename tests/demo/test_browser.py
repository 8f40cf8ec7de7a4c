"""End to end in headless Chromium: `captcha-ocr demo` started as a user would,
a real captcha uploaded through the page, the answer read back from the page.

Screenshots are saved for people to look at (path printed; see tests/browser.py).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import CaptchaReader
from captcha_ocr.reporting.run_report import write_run_report
from tests.helpers import free_port, stop, wait_until_up

from ..browser import artifact_path, chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(reader_path, gallery_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [sys.executable, "-m", "captcha_ocr", "demo", "--model", str(reader_path)]
    cmd += ["--port", str(port), "--gallery", str(gallery_dir)]
    with log.open("w") as out:
        process = subprocess.Popen(
            cmd, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{url}/api/model", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until_up(answers, process, "`captcha-ocr demo`", log.read_text)
    yield url, log
    stop(process, grace=30)


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, demo):
    url, _ = demo
    page = browser.new_page(viewport={"width": 900, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # The demo's Content-Security-Policy must let the page's own script and style run.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.goto(url)
    page.wait_for_selector("body[data-ready=yes]", timeout=30_000)
    yield page
    page.close()
    assert errors == [], f"JavaScript errors or policy violations on the page: {errors}"


def test_demo_says_where_it_listens(demo, reader_path):
    url, log = demo
    assert f"captcha-ocr demo: {url}/ reading with local file {reader_path}" in log.read_text()


def test_uploaded_captcha_is_read_on_the_page(page, demo, gallery_dir, reader_path, tmp_path):
    url, _ = demo
    captcha = sorted(gallery_dir.iterdir())[0]
    (expected,), _ = CaptchaReader.load(reader_path).read(
        decode_image(captcha.read_bytes(), 50, 200)[None]
    )
    assert expected  # the tiny reader reads something for this image

    page.set_input_files("#file", str(captcha))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)

    assert page.inner_text("#text") == expected
    boxes = page.locator("#characters .char")
    assert boxes.count() == len(expected)
    api = requests.post(
        f"{url}/api/read", files={"file": (captcha.name, captcha.read_bytes())}, timeout=60
    ).json()
    for i, character in enumerate(api["characters"]):
        assert boxes.nth(i).locator(".c").inner_text() == character["char"]
        assert boxes.nth(i).locator(".p").inner_text() == f"{100 * character['confidence']:.1f}%"
    assert "local file" in page.inner_text("#answered")
    assert "local file" in page.inner_text("#model")
    assert page.locator("#preview").evaluate("img => img.naturalWidth") == 200

    shot = artifact_path(tmp_path, "demo_upload.png")
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"not a picture", "notes.txt: not a readable image"),
        ("empty.png", b"", "empty.png: empty file"),
        ("huge.png", b"\x89PNG" + b"0" * (3 * 1024 * 1024), "limit"),
    ],
)
def test_bad_file_gets_a_message_on_the_page(page, tmp_path, name, data, message):
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    page.wait_for_selector("body[data-state=error]", timeout=30_000)
    assert message in page.inner_text("#error")
    assert page.locator("#result").is_hidden()
    assert "Traceback" not in page.content()
    shot = artifact_path(tmp_path, f"demo_bad_{Path(name).stem}.png")
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


def test_dropped_captcha_is_read(page, gallery_dir, reader_path):
    captcha = sorted(gallery_dir.iterdir())[1]
    (expected,), _ = CaptchaReader.load(reader_path).read(
        decode_image(captcha.read_bytes(), 50, 200)[None]
    )
    transfer = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [captcha.name, base64.b64encode(captcha.read_bytes()).decode()],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.inner_text("#text") == (expected or "(nothing read)")
    assert captcha.name in page.inner_text("#answered")


def test_gallery_image_is_read_with_its_true_label(page, gallery_dir):
    first = sorted(gallery_dir.iterdir())[0]
    page.click(f"#gallery button[title='{first.name}']")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert f"true label {first.stem}" in page.inner_text("#truth")
    assert first.name in page.inner_text("#answered")


def test_run_report_opens_offline(browser, captcha_pngs, tmp_path):
    labels = list(captcha_pngs)[:6]
    images = np.stack([decode_image(captcha_pngs[k], 50, 200) for k in labels])
    predicted = [k[::-1] for k in labels[:3]] + labels[3:]
    results = pd.DataFrame(
        {"file": labels, "label": labels, "predicted": predicted, "confidence": 0.5}
    )
    history = pd.DataFrame(
        {"epoch": [1, 2], "loss": [9, 3], "val_loss": [8, 4], "val_exact_match": [0, 0.5]}
        | {"val_cer": [0.9, 0.2]}
    )
    metrics = {"test_exact_match": 0.5, "test_cer": 0.3, "test_samples": 6, "test_errors": 3}
    report = write_run_report(
        tmp_path / "run_report.html",
        metrics=metrics,
        results=results,
        images=images,
        history=history,
    )
    context = browser.new_context(offline=True)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(sizes) == 3 + 1  # every wrong prediction, and the curves
    assert all(width > 0 for width in sizes)
    assert all(url.startswith(("file:", "data:")) for url in requested)
    shot = artifact_path(tmp_path, "run_report.png")
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    context.close()
