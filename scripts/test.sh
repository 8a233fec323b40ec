#!/usr/bin/env bash
# One command: install napari-medseg with its test dependencies into ./.venv (CPU torch pinned
# unless MEDSEG_TORCH=auto) and run the whole test suite headless under Xvfb.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k dicom
source "$(dirname "$0")/_env.sh"
install_system_packages
make_venv
install_torch "${MEDSEG_TORCH:-cpu}"
install_package testing
log "Running the test suite under Xvfb ..."
unset QT_QPA_PLATFORM
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if command -v xvfb-run >/dev/null 2>&1; then
  exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest -p no:cacheprovider "$@"
else
  exec python -m pytest -p no:cacheprovider "$@"
fi
