#!/usr/bin/env bash
# The GPU path's check (issue 15): on a machine with an NVIDIA GPU, builds gpu-cagra with the
# `cuda` feature against cuVS's PyPI wheels, then builds CAGRA on glove-50-angular on the GPU
# and on the CPU with the same parameters and prints recall@10, build time and QPS of both,
# for a batch of every query and for queries one at a time (examples/gpu_check.rs). About
# 2 minutes on one H100 with 16 cores; under 8 everywhere we know of.
#
#   crates/gpu-cagra/gpu-check.sh [DATA_DIR]      # default data/glove-50-angular
#
# Where the machine has neither network nor cargo (the project's device machine), the two
# steps before the run can be done elsewhere and named:
#   CUVS_LIBS=DIR       cuVS's libraries unpacked from the wheels (libcuvs_c.so, libcuvs.so,
#                       librmm.so, librapids_logger.so, libkvikio.so, what they bundle, and
#                       libcudart.so.13): no install. CUDA's own libraries (cuBLAS, cuSOLVER,
#                       cuSPARSE, cuRAND, nvJitLink, NVRTC, NCCL) are then looked for in the
#                       system Python's `nvidia` packages and /usr/local/cuda.
#   GPU_CHECK_BIN=FILE  target/release/examples/gpu_check built elsewhere: no build.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-data/glove-50-angular}
[ -f "$DATA/base.fvecs" ] || { echo "no $DATA/base.fvecs: run ../shared/datasets/prepare.sh" >&2; exit 2; }
nvidia-smi -L

if [ -z "${CUVS_LIBS:-}" ]; then
  VENV=${VENV:-data/cuvs-venv}
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check libcuvs-cu13==26.10.0 'nvidia-cuda-runtime>=13,<14'
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  CUDART_DIR=$(dirname "$(find "$SITE" -name 'libcudart.so.13' | head -1)")
  ln -sf libcudart.so.13 "$CUDART_DIR/libcudart.so"
  LIB_DIRS=$(find "$SITE" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
  if [ -z "${GPU_CHECK_BIN:-}" ]; then
    CUVS_LIB_DIR="$SITE/libcuvs/lib64" CUDART_LIB_DIR="$CUDART_DIR" \
      cargo build --release -p gpu-cagra --features cuda --example gpu_check
  fi
else
  SYS_NVIDIA=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
  LIB_DIRS=$CUVS_LIBS
  if [ -n "$SYS_NVIDIA" ]; then
    LIB_DIRS=$LIB_DIRS:$(find "$SYS_NVIDIA/nvidia" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
  fi
  [ -d /usr/local/cuda/lib64 ] && LIB_DIRS=$LIB_DIRS:/usr/local/cuda/lib64
fi
BIN=${GPU_CHECK_BIN:-target/release/examples/gpu_check}

export LD_LIBRARY_PATH=$LIB_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ldd "$BIN" | grep -q 'not found'; then
  echo "libraries not found:" >&2
  ldd "$BIN" | grep 'not found' >&2
  ldd "$(dirname "$(ldd "$BIN" | awk '/libcuvs_c/ {print $3}')")/libcuvs.so" | grep 'not found' >&2 || true
  exit 1
fi
timeout 480 "$BIN" --data "$DATA"
