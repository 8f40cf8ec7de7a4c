"""The one container image every component runs in (built from the Dockerfile).

Set CAPTCHA_OCR_IMAGE (or pass ``--image`` to ``captcha-ocr pipeline``) to the
name your cluster pulls, e.g. ``registry.example.com/ml/captcha-ocr:0.1.0``.
It is read when the components are defined, so set it before compiling.
"""

import os

from captcha_ocr import __version__

IMAGE_ENV = "CAPTCHA_OCR_IMAGE"
DEFAULT_IMAGE = f"captcha-ocr:{__version__}"
IMAGE = os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
