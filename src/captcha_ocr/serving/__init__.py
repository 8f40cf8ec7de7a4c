"""Reading captchas with a trained model: ``captcha-ocr predict``, the demo page, and the
MLflow pyfunc model that the registry serves.
"""
