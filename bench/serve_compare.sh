#!/usr/bin/env bash
# The served model before and after, in one run, on the same machine state:
#
#   bash bench/serve_compare.sh BASE_REV SERVE_PYTHON [SECONDS] [PAIRS]
#
# BASE_REV is a commit whose pyfunc still read with Keras (its src/ and bench/
# are taken with `git archive`, nothing is checked out); SERVE_PYTHON is the
# serving venv's python (README: .venv-serve/bin/python). Each server gets the
# shipped network (TrainParams(), untrained) from `serve_load.py --fresh-registry`:
# 4 clients x 1 image, 4 clients x 16 images, 1 client x 1 image (and the
# Keras pyfunc once more on 2 workers). Then PAIRS (default 3) more rounds of
# 4 clients x 1 image, before and the KServe predictor as `captcha-ocr deploy
# kserve` runs it (2 workers) in turn: this machine's speed drifts by tens of
# percent over minutes, so the ratio is read from servers measured side by
# side. Run it from the project folder with the project venv's python first on PATH.
set -euo pipefail
base_rev=$1 serve_python=$2 seconds=${3:-20} pairs=${4:-3}
here=$(pwd)
base=$(mktemp -d /tmp/serve-compare-XXXXXX)
trap 'rm -rf "$base"' EXIT
git archive "$base_rev" src bench | tar -x -C "$base"
# The old bench finds captchas beside its own folder: point it at the dataset.
export CAPTCHA_OCR_DATA=${CAPTCHA_OCR_DATA:-$here/../shared/data/captcha_images_v2.zip}

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
    "int8 dot products: $(grep -o -w -E 'avx512_vnni|avx_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
load() {  # label, shapes ("clients batch" ...), PYTHONPATH, bench folder, extra args
    local label=$1 shapes=$2 path=$3 bench=$4
    shift 4
    for shape in $shapes; do
        read -r clients batch <<<"${shape/x/ }"
        echo "== $label: $clients clients x $batch images"
        PYTHONPATH=$path python "$bench/serve_load.py" --fresh-registry --seconds "$seconds" \
            --clients "$clients" --batch "$batch" "$@" 2>/dev/null | grep -E "^(served|requests|latency|cpu)"
    done
}
all="4x1 4x16 1x1"
load "before ($base_rev): Keras pyfunc, mlflow models serve" "$all" "$base/src" "$base/bench"
# The old bench has no --workers; mlflow reads the worker count from the environment
# too. Each worker gets one TensorFlow thread, its share of 2 cores.
MLFLOW_MODELS_WORKERS=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
    load "before: Keras pyfunc, mlflow models serve -w 2, 1 TF thread each" 4x1 "$base/src" "$base/bench"
load "now: mlflow models serve" "$all" "$here/src" "$here/bench"
load "now: KServe predictor" "$all" "$here/src" "$here/bench" --kserve-python "$serve_python"
# Two worker processes, as `captcha-ocr deploy kserve` runs it on its 2-core limit.
load "now: KServe predictor, 2 workers" "$all" "$here/src" "$here/bench" --kserve-python "$serve_python" --workers 2
for pair in $(seq "$pairs"); do
    load "pair $pair, before" 4x1 "$base/src" "$base/bench"
    load "pair $pair, now: KServe predictor, 2 workers" 4x1 "$here/src" "$here/bench" --kserve-python "$serve_python" --workers 2
done
