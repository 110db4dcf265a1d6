#!/usr/bin/env bash
# The GPU path, measured in one go (issue 17 item 4): the CUDA tests, training throughput and MFU
# at paper scale, the attacks' speed at 256^2, and a reduced paper-config federation end to end.
#
#   bash benchmarks/gpu_check.sh [LOG]        # LOG defaults to gpu_check.log
#
# Run from the repository root on a machine with an NVIDIA GPU and FedAudit's dependencies
# importable (an installed venv, or PYTHONPATH=src plus the packages). Every step has its own time
# limit and a failing step does not stop the others; the whole log is also written to LOG.
set -u
LOG=${1:-gpu_check.log}
PY=${PYTHON:-python3}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1
: > "$LOG"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout -s KILL "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

step card 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
  --format=csv
step versions 30 "$PY" -c "import torch, monai, flwr, numpy; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'monai', monai.__version__, 'flwr', flwr.__version__, 'numpy', \
numpy.__version__)"
step cuda-tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  tests/test_inference.py -k cuda
step train-throughput 100 "$PY" benchmarks/train_throughput.py --device cuda --size 256 \
  --base 64 --batch 8 --volumes 4 --slices 64 --workers 8
step federation 150 "$PY" benchmarks/gpu_federation.py --device cuda --size 256 --base 64 \
  --rounds 3 --centers 4 --train-patients 2 --slices 96 --workers 4
step dlg-speed 45 "$PY" benchmarks/dlg_speed.py --device cuda --base 64 --size 256 \
  --iterations 100
step fedmia-speed 45 "$PY" benchmarks/fedmia_speed.py --device cuda --base 64 --size 256 \
  --samples 64 --chunk 16
step gradinv-speed 60 "$PY" benchmarks/gradinv_speed.py --device cuda --base 64 \
  --sizes 64 256 --evaluations 20 --classifier-evaluations 100
echo "total: $SECONDS s" | tee -a "$LOG"
