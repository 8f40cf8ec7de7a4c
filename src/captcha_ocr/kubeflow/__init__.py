"""Kubeflow Pipelines: the components, the pipeline and ``captcha-ocr pipeline``."""
