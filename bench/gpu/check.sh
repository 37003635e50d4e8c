#!/usr/bin/env bash
# The prepared GPU check: run ON the device machine, from the repository root, as ONE device call, e.g.
#   run(command="bash bench/gpu/check.sh", carry=[".whl"], timeout_s=540)
# after `bash bench/gpu/fetch_wheels.sh` here. It installs the carried wheels, runs every test marked `gpu`, then
# short CUDA runs of the throughput benchmarks; logs land in $OUT (they come back). Budget: about 8 minutes.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } 2>&1 | tee "$OUT/device.txt"
# 1. every CUDA-only path (bf16 autocast, outputs on the input's device, compiled kernels)
timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider -o addopts="" -rs tests/ 2>&1 | tee "$OUT/gpu_tests.log"
# 2. throughput on the GPU at realistic sizes (short: a few steps each)
timeout 90 python3 bench/brainmae_throughput.py --device cuda --steps 20 2>&1 | tee "$OUT/bench_brainmae.log"
timeout 120 python3 bench/brainmae_throughput.py --device cuda --realistic --steps 20 2>&1 | tee "$OUT/bench_brainmae_realistic.log"
timeout 90 python3 bench/neuroformer_throughput.py --device cuda --steps 20 2>&1 | tee "$OUT/bench_neuroformer.log"
echo "done: see $OUT"
