#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on the GPU machine, whose image has torch, numpy,
# pandas, scipy, scikit-image, grpcio and protobuf but not FedAudit's own stack
# (benchmarks/gpu_image_packages.txt): downloaded into DEST (default .whl, git-ignored) for its
# Python 3.12 on x86-64, at the versions installed here, so the GPU run uses what the tests use.
#
#   bash benchmarks/gpu_wheels.sh [DEST]
#
# Carried: only what the GPU check imports (the training, evaluation and attack code; no
# SimpleITK, ANTs, nibabel or Opacus: the check writes its study as .npy). The working tree and
# the wheels must fit in the 64 MiB a GPU run takes along; the script says how much is left.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PY=${PYTHON:-python3}
# keep in step with CARRIED in gpu_check.sh (its --dry mode blocks everything else)
CARRIED=(monai flwr pycryptodome cryptography cffi iterators jsonschema referencing rpds-py
         jsonschema-specifications)
LIMIT=$((64 * 1024 * 1024))

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
for dist in "${CARRIED[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$dist")
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_34_x86_64 -d "$DEST" \
    "$dist==$version"
done
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null \
       | awk '$2 == "total" {s += $1} END {print s}')
echo "wheels: ${#CARRIED[@]} in $DEST, $((wheels / 1024)) KiB; working tree $((tree / 1024)) KiB;" \
     "left of the 64 MiB: $(((LIMIT - wheels - tree) / 1024)) KiB"
if ((wheels + tree > LIMIT)); then
  echo "too large to carry: the working tree and the wheels exceed 64 MiB" >&2
  exit 1
fi
