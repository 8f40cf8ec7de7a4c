from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_model(
    ingest: dict,
    preprocess: dict,
    train: dict,
    mlflow_tracking_uri: str,
    raw: Input[Dataset],
    prepared: Input[Dataset],
    model: Output[Model],
):
    """Train the CNN + CTC captcha reader; open the MLflow run (`captcha-ocr train`).

    Takes the sections the model is made from; the MLflow run logs them as params.
    Uses every GPU the pod is given (MirroredStrategy when there are several).
    """
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    params = {"ingest": ingest, "preprocess": preprocess, "train": train}
    run_step("train", params, [raw.path, prepared.path], model.path, mlflow_tracking_uri)
    model.metadata.update(read_json(model.path, "models/train/mlflow_run.json"))
