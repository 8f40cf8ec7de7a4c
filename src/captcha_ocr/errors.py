"""Errors a user can act on: the CLI prints their message, no traceback."""


class CaptchaOcrError(RuntimeError):
    pass
