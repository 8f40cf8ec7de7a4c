"""The six pipeline steps, one module each: ingest, preprocess, train, evaluate, export, promote.

Each is a plain function with a small CLI (``captcha-ocr STEP``); dvc.yaml, MLproject
and the Kubeflow components all call these.
"""
