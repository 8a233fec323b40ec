# Shared set-up for scripts/launch.sh and scripts/test.sh (sourced, not run).
# Creates ./.venv (Python >= 3.11), installs a pinned torch without pulling a multi-GB CUDA
# build on machines without a GPU, then the package itself with the extras asked for.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MEDSEG_VENV:-$ROOT/.venv}"
TORCH_VERSION="2.13.0"

log() { printf '\033[1m[napari-medseg]\033[0m %s\n' "$*" >&2; }

pick_python() {
  for py in "${PYTHON:-}" python3.12 python3.11 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  log "Python >= 3.11 is required (napari 0.9). Install it, e.g. 'apt-get install python3.11 python3.11-venv'."
  return 1
}

install_system_packages() {
  # Qt/OpenGL libraries napari needs, and Xvfb for headless tests. Only as root on Debian/Ubuntu.
  local pkgs="xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 libfreetype6
    libdbus-1-3 libx11-6 libx11-xcb1 libxext6 libxkbcommon0 libxkbcommon-x11-0 libxcb1
    libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
    libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0
    libxcb-xinerama0 libxcb-xkb1"
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    if ! dpkg -s $pkgs >/dev/null 2>&1; then
      log "Installing Qt/OpenGL system libraries and Xvfb (apt)..."
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
      }
    fi
  elif ! command -v Xvfb >/dev/null 2>&1; then
    log "Not root: make sure Qt's xcb libraries are installed (see README). Xvfb is needed for the tests."
  fi
}

make_venv() {
  local py; py="$(pick_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "Creating virtual environment $VENV ..."
    "$py" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
}

has_nvidia_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

install_torch() {
  # $1 = "cpu" forces the CPU build; "auto" takes the CUDA build only when an NVIDIA GPU is present.
  local want="${1:-auto}"
  if python -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
    TORCH_SPEC="torch==$(python -c 'import torch; print(torch.__version__)')"
    return 0
  fi
  if [ "$want" = "auto" ] && has_nvidia_gpu; then
    log "NVIDIA GPU found: installing torch $TORCH_VERSION with CUDA..."
    python -m pip install -q "torch==$TORCH_VERSION"
    TORCH_SPEC="torch==$TORCH_VERSION"
  else
    log "Installing CPU-only torch $TORCH_VERSION ..."
    # '+cpu' matches only a CPU build: a local wheel, else PyTorch's CPU index. Never a CUDA build.
    python -m pip install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null \
      || python -m pip install -q "torch==$TORCH_VERSION+cpu" --index-url https://download.pytorch.org/whl/cpu \
      || python -m pip install -q "torch==$TORCH_VERSION+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
    TORCH_SPEC="torch==$TORCH_VERSION+cpu"
  fi
}

install_package() {
  # $1 = extras, e.g. "all" or "testing". The torch pin is repeated so nothing upgrades it.
  log "Installing napari-medseg[$1] ..."
  python -m pip install -q -e ".[$1]" "$TORCH_SPEC" "napari>=0.9,<0.10"
}
