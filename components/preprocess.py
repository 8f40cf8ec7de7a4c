from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess_data(preprocess: dict, raw: Input[Dataset], prepared: Output[Dataset]):
    """Validate every image, report rejects, split and write arrays (`captcha-ocr preprocess`)."""
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    run_step("preprocess", {"preprocess": preprocess}, inputs=[raw.path], output=prepared.path)
    report = read_json(prepared.path, "reports/data_report.json")
    prepared.metadata.update({k: v for k, v in report.items() if isinstance(v, int | float | str)})
