from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest_data(ingest: dict, raw: Output[Dataset]):
    """Fetch the captcha zip, record its sha256 and unpack it safely (`captcha-ocr ingest`)."""
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    run_step("ingest", {"ingest": ingest}, inputs=[], output=raw.path)
    raw.metadata.update(read_json(raw.path, "data/raw/ingest.json"))
