#!/usr/bin/env bash
# On the device machine (repository root; run with carry [".whl", ".fixtures"]):
#   bash benchmarks/device/run.sh [gpu_session.py options]
# installs what the image lacks into /tmp/site and runs the prepared session under $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
mkdir -p /tmp/site
tar -xJf .whl/simpleitk.tar.xz -C /tmp/site || exit 3
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import SimpleITK, pydicom, nibabel, torch, sdpm_cli.cli; print('imports ok; cuda', torch.cuda.is_available())" || exit 3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/device/gpu_session.py --out "${OUT:-runs/gpu_session}" "$@"
