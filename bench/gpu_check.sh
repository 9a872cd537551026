#!/usr/bin/env bash
# The prepared GPU check (about 5 minutes on an H100/H200; budget 8): the CUDA-marked tests, the
# Lasso on CUDA at d = 625,500 and 16,781,312 with the coupled solver and the coordinate-parallel
# one side by side, and the pruning-phase overhead of LeNet, AlexNet32 and ResNet-18 on
# CIFAR-shaped input. Writes bench/results-gpu.json and regenerates BENCHMARKS.md's GPU section.
#
# Without a GPU it runs a CPU mode on tiny shapes (under a minute) that exercises the same code
# and says in one line that the GPU figures were not measured; CI runs that mode.
#
# With --data-dir (Fashion-MNIST's IDX files) it also makes one causal run of the study protocol
# end to end on the GPU. Every phase records its error and lets the next run; the results so far
# are written after each. On a remote GPU machine pass --out DIR, bring DIR/results-gpu.json back
# and publish it here with `python bench/gpu_check.py --publish FILE [--note TEXT]`.
#
#     bash bench/gpu_check.sh [--mode auto|gpu|cpu] [--out DIR] [--skip-tests] [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1
exec timeout 480 "$PY" bench/gpu_check.py "$@"
