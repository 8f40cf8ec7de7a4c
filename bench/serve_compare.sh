#!/usr/bin/env bash
# The served model before and after, in one run, on the same machine state:
#
#   bash bench/serve_compare.sh BASE_REV SERVE_PYTHON [SECONDS]
#
# BASE_REV is a commit whose pyfunc still read with Keras (its src/ and bench/
# are taken with `git archive`, nothing is checked out); SERVE_PYTHON is the
# serving venv's python (README: .venv-serve/bin/python). Each server gets the
# shipped network (TrainParams(), untrained) from `serve_load.py --fresh-registry`:
# 4 clients x 1 image, 4 clients x 16 images, 1 client x 1 image. Run it from the
# project folder with the project venv's python first on PATH.
set -euo pipefail
base_rev=$1 serve_python=$2 seconds=${3:-20}
here=$(pwd)
base=$(mktemp -d /tmp/serve-compare-XXXXXX)
trap 'rm -rf "$base"' EXIT
git archive "$base_rev" src bench | tar -x -C "$base"

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
    "int8 dot products: $(grep -o -w -E 'avx512_vnni|avx_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
load() {  # label, PYTHONPATH, bench folder, extra args
    local label=$1 path=$2 bench=$3
    shift 3
    for shape in "4 1" "4 16" "1 1"; do
        read -r clients batch <<<"$shape"
        echo "== $label: $clients clients x $batch images"
        PYTHONPATH=$path python "$bench/serve_load.py" --fresh-registry --seconds "$seconds" \
            --clients "$clients" --batch "$batch" "$@" 2>/dev/null | grep -E "^(served|requests|latency)"
    done
}
load "before ($base_rev): Keras pyfunc, mlflow models serve" "$base/src" "$base/bench"
load "now: mlflow models serve" "$here/src" "$here/bench"
load "now: KServe predictor" "$here/src" "$here/bench" --kserve-python "$serve_python"
# Two worker processes, as `captcha-ocr deploy kserve` runs it on its 2-core limit.
load "now: KServe predictor, 2 workers" "$here/src" "$here/bench" --kserve-python "$serve_python" --workers 2
