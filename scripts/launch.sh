#!/usr/bin/env bash
# One command: install napari-medseg (and napari, torch) into ./.venv and launch napari with the
# plugin docked and a sample hippocampus MRI open. Extra arguments go to the launcher, e.g.
#   bash scripts/launch.sh path/to/scan.nii.gz
source "$(dirname "$0")/_env.sh"
install_system_packages
make_venv
install_torch auto
install_package all
log "Launching napari ..."
exec napari-medseg-gui "$@"
