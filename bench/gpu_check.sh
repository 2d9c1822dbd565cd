#!/usr/bin/env bash
# A first look at mig-exporter on a real GPU node; see bench/gpu_check.py. Usage: bench/gpu_check.sh OUT_DIR
# Runs from the checkout with only what a bare GPU image offers (no pip install, no network, no Prometheus).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bench/gpu_check.sh OUT_DIR" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" bench/gpu_check.py "$1"
