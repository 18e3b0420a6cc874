#!/usr/bin/env bash
# Installs everything automl needs into .venv/ at the repository root. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: DejaVu fonts (the generated retrieval datasets render glyphs with them),
# Fashion-MNIST (a second real dataset) and Chromium (a slow test looks at the MLflow UI headless).
# All are optional at run time; the tests that need them say so.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  need=()
  for pkg in fonts-dejavu-core dataset-fashion-mnist chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null \
      || echo "setup: could not install ${need[*]} (continuing; tests that need them will say so)" >&2
  fi
fi

[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, pinned: a newer torch is a multi-GB CUDA download; 2.14.1 is what this project supports.
.venv/bin/python -c "import torch, torchvision" 2>/dev/null || $PIP install -q "torch==2.14.1" "torchvision==0.29.1"
$PIP install -q -e ".[test]"
