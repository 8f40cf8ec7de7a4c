"""captcha-ocr: train, track, ship and serve a text-captcha reader."""

__version__ = "0.1.0"
