"""MLflow "models from code" entry point for the captcha reader.

MLflow stores this file with the model and runs it at load time, so the model
is code plus the ``.keras`` artifact, never a pickle.
"""

import mlflow

from captcha_ocr.serving.pyfunc import CaptchaReaderModel

mlflow.models.set_model(CaptchaReaderModel())
