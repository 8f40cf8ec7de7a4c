from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_model(
    ingest: dict,
    preprocess: dict,
    train: dict,
    evaluate: dict,
    export: dict,
    promote: dict,
    mlflow_tracking_uri: str,
    git_commit: str,
    raw: Input[Dataset],
    prepared: Input[Dataset],
    model: Input[Model],
    evaluation: Input[Artifact],
    reader: Output[Model],
) -> str:
    """Save the reader (.keras, SavedModel, ONNX) and register it (`captcha-ocr export`).

    It takes every params.yaml section: the registered version is tagged with
    all of them. Returns the registered version number.
    """
    from captcha_ocr.kubeflow.workspace import environment, read_json, run_step

    params = dict(
        ingest=ingest,
        preprocess=preprocess,
        train=train,
        evaluate=evaluate,
        export=export,
        promote=promote,
    )

    with environment(CAPTCHA_OCR_GIT_COMMIT=git_commit):
        run_step(
            "export",
            params,
            [raw.path, prepared.path, model.path, evaluation.path],
            reader.path,
            mlflow_tracking_uri,
        )
    registered = read_json(reader.path, "models/export/registered.json")
    reader.metadata.update(registered)
    return registered["version"]
