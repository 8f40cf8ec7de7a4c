# One image for every Kubeflow component (and for running any captcha-ocr step).
#
#   docker build -t captcha-ocr:0.1.0 .
#   docker build -t captcha-ocr:0.1.0-gpu --build-arg TENSORFLOW="tensorflow[and-cuda]==2.21.0" .
#
# The install is the README's: a venv, then `pip install -r requirements.txt`
# with the package. No data, models or MLflow store are baked in (.dockerignore).
FROM python:3.11-slim

# The CPU build of TensorFlow by default; the GPU variant swaps it for the
# same release with its CUDA libraries, every other pin held where it was.
ARG TENSORFLOW=tensorflow-cpu==2.21.0

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/captcha-ocr
COPY requirements.txt constraints.txt pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir -r requirements.txt . \
    && if [ "$TENSORFLOW" != "tensorflow-cpu==2.21.0" ]; then \
         pip uninstall -y tensorflow-cpu \
         && pip freeze > /tmp/pins \
         && pip install --no-cache-dir -c /tmp/pins "$TENSORFLOW"; \
       fi

# KFP runs components as this user; they write only to temporary folders.
RUN useradd --create-home --uid 1000 captcha
USER captcha
WORKDIR /home/captcha

CMD ["captcha-ocr", "--help"]
