#!/usr/bin/env bash
# The GPU path, measured in one run of at most 8 minutes: the CUDA tests, training throughput and
# bf16 MFU at paper scale (UNet base 64, 2.68e7 parameters, 256^2 slices) with the minutes a
# 20-round paper-scale scenario would take, DLG iterations/s at 256^2, FedMIA and the inversion
# suite's speed, and a reduced paper-config federation end to end (wall time, held-out MAE
# against the constant predictor).
#
#   bash benchmarks/gpu_wheels.sh              # here, once: the wheels the GPU image lacks (.whl/)
#   bash benchmarks/gpu_check.sh [LOG]         # on the GPU machine, carrying .whl
#   bash benchmarks/gpu_check.sh --dry [LOG]   # here, on the CPU: the same steps at toy sizes
#
# The GPU machine's image has torch, numpy, pandas, scipy, scikit-image, grpcio and protobuf but
# not monai, flwr and a few of their needs (benchmarks/gpu_image_packages.txt); .whl/, when
# present, is installed into /tmp/site first. Nothing here needs SimpleITK: the federation's
# study is written as .npy. --dry runs every step on the CPU at toy sizes with the GPU image
# simulated (benchmarks/gpu_image/sitecustomize.py: a module of any distribution that is neither
# in the image nor carried cannot be imported) and checks that the working tree and the wheels
# fit in what a GPU run takes along (64 MiB). Every step has its own time limit; a failing step
# does not stop the others; the limits of a GPU run add up to 460 s; the log is also written to
# LOG (default gpu_check.log).
set -u
cd "$(dirname "$0")/.."
DRY=0
if [[ ${1:-} == --dry ]]; then
  DRY=1
  shift
fi
LOG=${1:-gpu_check.log}
PY=${PYTHON:-python3}
# keep in step with CARRIED in gpu_wheels.sh
CARRIED="monai flwr pycryptodome cryptography cffi iterators jsonschema referencing rpds-py
jsonschema-specifications"
export PYTHONUNBUFFERED=1
: > "$LOG"
FAILED=0

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout -s KILL "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  ((rc == 0)) || FAILED=$((FAILED + 1))
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

if ((DRY)); then
  # pip runs outside the simulated image
  step carry 300 bash benchmarks/gpu_wheels.sh /tmp/fedaudit-gpu-wheels
  export FEDAUDIT_GPU_IMAGE=$PWD/benchmarks/gpu_image_packages.txt
  export FEDAUDIT_GPU_CARRIED=$CARRIED
  export PYTHONPATH=$PWD/benchmarks/gpu_image:$PWD/src
  DEV=cpu
else
  if compgen -G ".whl/*.whl" > /dev/null; then
    step wheels 45 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src
  DEV=cuda
  step card 10 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
    --format=csv
fi

# toy sizes for --dry: the same code, seconds on a CPU
size() { if ((DRY)); then echo "$2"; else echo "$1"; fi; }

step versions 30 "$PY" -c "import torch, monai, flwr, numpy; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'monai', monai.__version__, 'flwr', flwr.__version__, 'numpy', \
numpy.__version__)"
# skipped without CUDA (--dry): then this checks that they import
step cuda-tests 60 "$PY" -m pytest -q -p no:cacheprovider -p no:randomly tests/test_cuda.py \
  tests/test_inference.py -k cuda
step train-throughput 70 "$PY" benchmarks/train_throughput.py --device "$DEV" \
  --size "$(size 256 32)" --base "$(size 64 4)" --batch 8 --volumes "$(size 4 1)" \
  --slices "$(size 64 8)" --workers "$(size 8 0)"
step federation 140 "$PY" benchmarks/gpu_federation.py --device "$DEV" --size "$(size 256 32)" \
  --base "$(size 64 4)" --rounds "$(size 3 2)" --centers "$(size 4 2)" --train-patients \
  "$(size 2 1)" --slices "$(size 96 8)" --workers "$(size 4 0)"
step dlg-speed 35 "$PY" benchmarks/dlg_speed.py --device "$DEV" --base "$(size 64 4)" \
  --size "$(size 256 32)" --iterations "$(size 100 5)"
step fedmia-speed 30 "$PY" benchmarks/fedmia_speed.py --device "$DEV" --base "$(size 64 4)" \
  --size "$(size 256 32)" --samples "$(size 64 8)" --chunk "$(size 16 4)" \
  --candidates "$(size 1500 16)"
step gradinv-speed 40 "$PY" benchmarks/gradinv_speed.py --device "$DEV" --base "$(size 64 4)" \
  --sizes "$(size 64 32)" $( ((DRY)) || echo 256) --evaluations "$(size 20 3)" \
  --classifier-evaluations "$(size 100 5)"
echo "total: $SECONDS s, $FAILED step(s) failed" | tee -a "$LOG"
exit $((FAILED > 0))
