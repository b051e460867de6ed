#!/usr/bin/env bash
# The GPU check, one script, under 5 minutes on one GPU (each step has a time limit):
#   1. the engine's tests on CUDA (core, pack, applications, metrics: the engine trains on CUDA when present,
#      and tests that take `device` run on both cpu and cuda; the pipeline's Ray tests need no GPU and would not
#      fit the 5 minutes: TESTS=tests runs everything),
#   2. benchmarks/train_speed.py --device cuda (the paper preset, every scale, with the reference-style epochs),
#   3. benchmarks/pack_throughput.py --device cuda for K = 1, 4, 8, 16.
# Figures go to stdout and to $OUT (default gpu_check_out/). Run from anywhere:
#   bash benchmarks/gpu_check.sh [IMAGE]          # default image: a synthetic one of birds.png's size
# DEVICE=cpu PRESET=test TESTS=tests/test_pack.py K=1,2 bash benchmarks/gpu_check.sh   # a quick dry run on CPU
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-paper}
TESTS=${TESTS:-tests/test_core.py tests/test_pack.py tests/test_applications.py tests/test_metrics.py}
K=${K:-1,4,8,16}
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
status=0

if [ "$DEVICE" = cuda ]; then
    "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device visible to torch')" || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" | tee "$OUT/torch.txt"

IMAGE=${1:-$OUT/synthetic.png}
if [ -z "${1:-}" ]; then
    "$PY" -c "from tests.conftest import synthetic_image, write_png; write_png('$IMAGE', synthetic_image(164, 244))"
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the output, remember failures
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -ne 0 ] && status=1
}

step tests 120 "$PY" -m pytest -q -x $TESTS  # word-split: a list of paths
step train_speed 60 "$PY" benchmarks/train_speed.py "$IMAGE" --device "$DEVICE" --preset "$PRESET" --epochs 3
step pack_throughput 110 "$PY" benchmarks/pack_throughput.py "$IMAGE" --device "$DEVICE" --preset "$PRESET" --k "$K"
echo "gpu_check: $([ $status -eq 0 ] && echo ok || echo 'some step failed or ran out of time') (outputs in $OUT/)"
exit $status
