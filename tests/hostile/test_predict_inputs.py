"""Bad models and images for ``captcha-ocr predict``: refused by name, nothing run.

A model is input too. Each hostile model below would create a marker file if
anything in it were unpickled or run; the marker must never appear, whether
the model is named as a folder, a ``file:`` URI, ``runs:/`` or ``models:/``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.hostile.conftest import Project, assert_refused

# Run inside the project (its MLflow store): writes the hostile models and prints
# {case: what to pass as --model}. Unpickling a Touch creates the marker file.
MAKE_MODELS = r"""
import json, pathlib, pickle, shutil, sys
import mlflow, yaml

marker, out = map(pathlib.Path, sys.argv[1:3])

class Touch(mlflow.pyfunc.PythonModel):
    def __reduce__(self):
        return (pathlib.Path.touch, (marker,))

    def predict(self, context, model_input, params=None):
        return model_input

models = {}
pickled = out / "pickled"
mlflow.pyfunc.save_model(pickled, python_model=Touch(), pip_requirements=[])
models["pickled pyfunc, folder"] = str(pickled)
models["pickled pyfunc, file URI"] = pickled.as_uri()

mlflow.set_experiment(experiment_id=mlflow.create_experiment(
    "hostile", artifact_location=(out / "artifacts").as_uri()))
with mlflow.start_run() as run:
    mlflow.pyfunc.log_model(name="pickled", python_model=Touch(), pip_requirements=[],
                            registered_model_name="pickled-reader")
models["pickled pyfunc, runs URI"] = f"runs:/{run.info.run_id}/pickled"
models["pickled pyfunc, models URI"] = "models:/pickled-reader/1"

# Another flavor: sklearn's loader would unpickle model.pkl.
foreign = out / "foreign"
foreign.mkdir()
(foreign / "model.pkl").write_bytes(pickle.dumps(Touch()))
(foreign / "MLmodel").write_text(yaml.safe_dump({"flavors": {
    "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"},
    "sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}}}))
models["foreign flavor, folder"] = str(foreign)

# This project's reader with its code file swapped: the code must not run.
ours = pathlib.Path(mlflow.artifacts.download_artifacts("models:/captcha-ocr/1"))
swapped = out / "swapped"
shutil.copytree(ours, swapped)
code = (swapped / "pyfunc_model.py").read_text()
(swapped / "pyfunc_model.py").write_text(
    f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" + code)
models["reader with foreign code"] = str(swapped)

# This project's reader with a pickle in place of the network it serves with.
renamed = out / "renamed"
shutil.copytree(ours, renamed)
for network in (renamed / "artifacts").glob("*.onnx"):
    network.write_bytes(pickle.dumps(Touch()))
models["pickle as the reader's network"] = str(renamed)
(out / "reader.keras").write_bytes(pickle.dumps(Touch()))
models["pickle renamed .keras"] = str(out / "reader.keras")
print(json.dumps(models))
"""

REFUSED = {
    "pickled pyfunc, folder": "is not a captcha-ocr reader",
    "pickled pyfunc, file URI": "is not a captcha-ocr reader",
    "pickled pyfunc, runs URI": "is not a captcha-ocr reader",
    "pickled pyfunc, models URI": "is not a captcha-ocr reader",
    "foreign flavor, folder": "is not a captcha-ocr reader: it is a sklearn model",
    "pickle as the reader's network": ".onnx: is not an ONNX model",
    "pickle renamed .keras": "is not a Keras archive",
}


def a_captcha(root: Path) -> Path:
    return min((root / "data/raw/images").rglob("*.png"))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def armed(trained_project, tmp_path_factory):
    """A copy of the trained project, the hostile models and the marker they would make."""
    root = tmp_path_factory.mktemp("armed") / "project"
    shutil.copytree(trained_project, root, symlinks=True)
    project = Project(root)
    marker, out = root.parent / "marker", root.parent / "models"
    out.mkdir()
    made = subprocess.run(
        [sys.executable, "-c", MAKE_MODELS, str(marker), str(out)],
        cwd=root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    good = a_captcha(root)
    return project, marker, json.loads(made.stdout.splitlines()[-1]), good


# An address nothing can bind: should a model get through, the demo stops, not serves.
DEMO = ["demo", "--host", "256.0.0.1", "--model"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "command"),
    [(case, "predict") for case in sorted(REFUSED)]
    + [(case, "demo") for case in sorted(REFUSED) if case.startswith("pickled")],
)
def test_a_model_that_is_not_our_reader_is_refused_before_it_runs(armed, case, command):
    project, marker, models, good = armed
    marker.unlink(missing_ok=True)  # saving a pickled model unpickles it once
    before = project.checksums()
    if command == "predict":
        result = project.run("predict", "--model", models[case], str(good))
    else:
        result = project.run(*DEMO, models[case])
    assert not marker.exists(), f"{case}: something from the model ran"
    assert_refused(result, models[case], REFUSED[case], before=before, after=project.checksums())


@pytest.mark.slow
def test_our_reader_is_read_without_running_the_code_stored_with_it(armed):
    project, marker, models, good = armed
    marker.unlink(missing_ok=True)
    swapped = project.run(
        "predict", "--json", "--model", models["reader with foreign code"], str(good)
    )
    assert swapped.returncode == 0, swapped.stderr
    assert not marker.exists()
    registered = project.run("predict", "--json", "--model", "models:/captcha-ocr/1", str(good))
    assert json.loads(swapped.stdout) == json.loads(registered.stdout)


BAD_URIS = ["runs:/deadbeef/reader", "models:/captcha-ocr@", "models:/captcha-ocr@nobody"]


@pytest.mark.slow
@pytest.mark.parametrize("uri", BAD_URIS)
def test_a_model_uri_with_nothing_there_is_named(project, uri):
    good = a_captcha(project.root)
    before = project.checksums()
    result = project.run("predict", "--model", uri, str(good))
    assert_refused(result, uri, before=before, after=project.checksums())


def bad_image(name: str) -> tuple[bytes | None, str]:
    """The file's bytes (None: it does not exist) and what the message must say."""
    if name == "big.png":  # noise does not compress: over 2 MiB, few pixels
        noise = np.random.default_rng(0).integers(0, 256, (1100, 1000, 3), dtype=np.uint8)
        return png(Image.fromarray(noise)), "limit 2097152"
    if name == "wide.png":  # 46 KB that decodes to 3160x3160 RGBA
        return png(Image.new("RGBA", (3160, 3160), (0, 0, 0, 0))), "3160x3160 pixels"
    if name == "notes.png":
        return b"plain text", "not a readable image"
    return None, "no such file or folder"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["models:/captcha-ocr@champion", "models/export"])
@pytest.mark.parametrize("bad", ["big.png", "wide.png", "missing.png", "notes.png"])
def test_a_bad_image_is_named_and_the_others_are_still_read(project, model, bad):
    good = a_captcha(project.root)
    data, message = bad_image(bad)
    folder = project.root.parent / "inputs"
    folder.mkdir()
    if data is not None:
        (folder / bad).write_bytes(data)
    before = project.checksums()
    names = [str(good), str(folder / bad), str(good)]
    result = project.run("predict", "--json", "--model", model, *names)
    assert_refused(result, bad, message, before=before, after=project.checksums())
    rows = json.loads(result.stdout)
    assert [row["file"] for row in rows] == names
    assert rows[0]["text"] and rows[0] == rows[2] and "error" in rows[1]


@pytest.mark.slow
def test_a_folder_reads_what_the_command_line_reads(project):
    good = a_captcha(project.root)
    folder = project.root.parent / "inputs"
    folder.mkdir()
    shutil.copy(good, folder / "a.png")
    Image.open(good).save(folder / "b.gif")
    (folder / "notes.txt").write_text("not an image")
    result = project.run("predict", "--json", str(folder))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["file"] for row in rows] == [str(folder / "a.png"), str(folder / "b.gif")]
    named = json.loads(project.run("predict", "--json", str(folder / "b.gif")).stdout)
    assert rows[1]["text"] == named[0]["text"]
    assert "skipped" in result.stderr and ".txt" in result.stderr


@pytest.mark.slow
def test_a_garbage_onnx_file_is_named_as_not_onnx(project):
    network = project.root.parent / "network" / "captcha_network.onnx"
    network.parent.mkdir()
    network.write_bytes(np.random.default_rng(1).bytes(3000))
    shutil.copy(project.root / "models/export/vocabulary.json", network.parent)
    good = a_captcha(project.root)
    before = project.checksums()
    result = project.run("predict", "--model", str(network), str(good))
    assert_refused(
        result, str(network), "is not an ONNX model", before=before, after=project.checksums()
    )


def test_predict_in_a_folder_without_a_store_creates_none(tmp_path, captcha_pngs):
    png = tmp_path / "a.png"
    png.write_bytes(next(iter(captcha_pngs.values())))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "captcha_ocr", "predict", str(png)]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no MLflow store here" in done.stderr and str(tmp_path / "mlflow.db") in done.stderr
    assert not (tmp_path / "mlflow.db").exists()
