from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluation_gate(promote: dict, evaluation: Input[Artifact]) -> bool:
    """True when the test scores allow promotion at all (promote.min_exact_match).

    The pipeline runs ``promote_model`` only when this says so; the registry's
    own gate (beat the champion) then decides between champion and challenger.
    """
    from captcha_ocr.config import PromoteParams
    from captcha_ocr.kubeflow.workspace import read_json
    from captcha_ocr.registry import evaluation_gate as gate

    scores = read_json(evaluation.path, "reports/metrics.json")
    passes, why = gate(scores["test_exact_match"], PromoteParams.model_validate(promote))
    print(f"evaluation gate: {'open' if passes else 'closed'}: {why}")
    return passes


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote_model(
    promote: dict,
    export: dict,
    mlflow_tracking_uri: str,
    version: str,
    promotion: Output[Artifact],
):
    """Move `champion` to this version if it beats the champion (`captcha-ocr promote`)."""
    from captcha_ocr.kubeflow.workspace import read_json, run_step

    run_step(
        "promote",
        {"promote": promote, "export": export},
        [],
        promotion.path,
        mlflow_tracking_uri,
        extra_args=["--version", version],
    )
    promotion.metadata.update(read_json(promotion.path, "reports/promotion.json"))
