"""Which MLflow models count as this project's reader: decided from MLmodel alone."""

from __future__ import annotations

import pytest
import yaml

from captcha_ocr.serving.readers import NotOurModel, reader_artifact

OURS = {
    "flavors": {
        "python_function": {
            "loader_module": "mlflow.pyfunc.loaders.code_model",
            "model_code_path": "/somewhere/captcha_ocr/pyfunc_model.py",
            "artifacts": {"reader": {"path": "artifacts/captcha_reader.keras", "uri": "x"}},
            "code": "code",
        }
    }
}


def with_pyfunc(**changes) -> dict:
    pyfunc = {**OURS["flavors"]["python_function"], **changes}
    return {"flavors": {"python_function": {k: v for k, v in pyfunc.items() if v is not None}}}


REFUSED = {
    "not YAML": ("flavors: [", "not YAML"),
    "no flavors": ({"run_id": "x"}, "no python_function flavor"),
    "another flavor too": (
        {"flavors": {**OURS["flavors"], "sklearn": {"pickled_model": "model.pkl"}}},
        "it is a sklearn model",
    ),
    "a pickled object": (
        with_pyfunc(loader_module="mlflow.pyfunc.model", python_model="python_model.pkl"),
        "is a pickled Python object",
    ),
    "another loader": (with_pyfunc(loader_module="mlflow.sklearn"), "loaded by mlflow.sklearn"),
    "another code file": (with_pyfunc(model_code_path="/x/agent.py"), "'/x/agent.py'"),
    "no reader artifact": (with_pyfunc(artifacts={}), "no reader artifact"),
    "reader outside the model": (
        with_pyfunc(artifacts={"reader": {"path": "../../home/me/.ssh/x.keras"}}),
        "no reader artifact inside it",
    ),
    "reader not .keras": (
        with_pyfunc(artifacts={"reader": {"path": "artifacts/model.pkl"}}),
        "that is a .keras file",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_anything_but_our_reader_is_refused_by_name(case):
    spec, why = REFUSED[case]
    text = spec if isinstance(spec, str) else yaml.safe_dump(spec)
    with pytest.raises(NotOurModel, match="runs:/abc/reader: is not a captcha-ocr reader") as err:
        reader_artifact("runs:/abc/reader", text)
    assert why in str(err.value)


def test_our_reader_gives_the_path_of_its_keras_file():
    assert reader_artifact("x", yaml.safe_dump(OURS)) == "artifacts/captcha_reader.keras"
