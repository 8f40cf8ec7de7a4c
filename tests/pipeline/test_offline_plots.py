"""`dvc plots show` with the project's .dvc/config renders its charts offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..browser import artifact_path, chromium
from ..conftest import PROJECT_ROOT

DVC = str(Path(sys.executable).with_name("dvc"))


def test_dvc_plots_page_draws_without_a_network(tmp_path):
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    for name in ("config", "offline_plots.html"):
        shutil.copy(PROJECT_ROOT / ".dvc" / name, tmp_path / ".dvc" / name)
    history = "epoch,loss,val_loss\n1,16.2,15.9\n2,9.1,8.7\n3,2.4,3.0\n"
    (tmp_path / "history.csv").write_text(history)
    done = subprocess.run(
        [DVC, "plots", "show", "history.csv", "-x", "epoch", "-y", "loss"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    page_path = tmp_path / "dvc_plots" / "index.html"
    assert "<script src=" not in page_path.read_text()

    with chromium() as browser:
        context = browser.new_context(offline=True)
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(page_path.as_uri())
        # vega-embed draws the chart into a canvas (or svg) inside its container.
        page.wait_for_selector(".vega-embed canvas, .vega-embed svg", timeout=30_000)
        shot = artifact_path(tmp_path, "dvc_plots_offline.png")
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        context.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
