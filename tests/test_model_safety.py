"""A model folder changes atomically and damaged weights are refused (issue 14, item 2)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from napari_medseg.models import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelLoadError,
    build_network,
    file_sha256,
    load_model,
    plan_network,
    plan_patch_size,
    read_card,
    save_model,
)
from napari_medseg.models.card import PENDING_SUFFIX


def _net_and_card(task="Blobs", seed=0):
    torch.manual_seed(seed)
    _, strides = plan_patch_size((16, 16))
    spec = plan_network(2, 1, 2, strides, base_channels=4, max_channels=8)
    card = ModelCard(task=task, classes=[{"value": 0, "name": "background", "color": [0, 0, 0]},
                                         {"value": 1, "name": "blob", "color": [255, 0, 0]}],
                     dims=2, in_channels=1, patch_size=[16, 16], network=spec,
                     normalisation=[{"scheme": "zscore"}])
    return build_network(spec), card


def test_card_holds_the_weights_checksum(tmp_path):
    net, card = _net_and_card()
    out = save_model(net, card, tmp_path / "m")
    assert read_card(out).weights_sha256 == file_sha256(out / WEIGHTS_FILE)
    assert card.weights_sha256 is None  # the caller's card is not changed
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_FILE, WEIGHTS_FILE])
    load_model(out)


def test_corrupted_weights_are_refused(tmp_path):
    net, card = _net_and_card()
    out = save_model(net, card, tmp_path / "m")
    data = bytearray((out / WEIGHTS_FILE).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # 64 zeroed bytes inside a tensor
    (out / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its model card"):
        load_model(out)


def test_a_save_killed_between_its_renames_leaves_a_consistent_model(tmp_path):
    """Weights renamed, card not yet: the pending card (matching checksum) is used."""
    old_net, old_card = _net_and_card(seed=0)
    out = save_model(old_net, old_card, tmp_path / "m")
    new_net, new_card = _net_and_card(task="Newer", seed=1)
    staging = save_model(new_net, new_card, tmp_path / "staging")
    os.replace(staging / CARD_FILE, out / (CARD_FILE + PENDING_SUFFIX))
    os.replace(staging / WEIGHTS_FILE, out / WEIGHTS_FILE)  # first rename done, then killed
    assert read_card(out).task == "Newer"
    model, card = load_model(out)
    x = torch.randn(1, 1, 16, 16)
    new_net.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), new_net(x))
    # the next save completes normally and leaves no pending files
    save_model(old_net, old_card, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_FILE, WEIGHTS_FILE])
    assert read_card(out).task == "Blobs"


def test_a_save_killed_before_its_renames_keeps_the_old_model(tmp_path):
    net, card = _net_and_card()
    out = save_model(net, card, tmp_path / "m")
    (out / (WEIGHTS_FILE + PENDING_SUFFIX)).write_bytes(b"half written")
    (out / ".tmp-deadbeef").write_bytes(b"x")
    os.utime(out / ".tmp-deadbeef", (0, 0))  # an old leftover
    assert read_card(out).task == "Blobs"
    load_model(out)
    save_model(net, card, out)
    assert not (out / ".tmp-deadbeef").exists()


def test_sigkill_during_save_never_breaks_the_model(tmp_path):
    """Kill a process saving in a loop at random moments; the folder always loads."""
    net, card = _net_and_card()
    out = save_model(net, card, tmp_path / "m")
    code = textwrap.dedent(f"""
        import torch
        from napari_medseg.models import load_model, save_model
        net, card = load_model({str(out)!r})
        print("ready", flush=True)
        while True:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.01)
            save_model(net, card, {str(out)!r})
    """)
    for delay in (0.05, 0.2, 0.35):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        import time

        time.sleep(delay)
        proc.kill()
        proc.wait()
        load_model(out)  # consistent: the card matches the weights


def test_model_files_are_readable_by_colleagues(tmp_path):
    net, card = _net_and_card()
    old = os.umask(0o022)
    try:
        out = save_model(net, card, tmp_path / "m")
    finally:
        os.umask(old)
    for name in (WEIGHTS_FILE, CARD_FILE):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode & 0o044 == 0o044, oct(mode)


def test_long_folder_names_save(tmp_path):
    net, card = _net_and_card()
    out = save_model(net, card, tmp_path / ("m" * 240))
    load_model(out)


def test_a_second_training_into_the_same_folder_is_refused(tmp_path):
    from napari_medseg.models.card import ModelFolderBusyError, model_folder_lock

    with model_folder_lock(tmp_path / "m"):
        with pytest.raises(ModelFolderBusyError, match="Another training is already writing"):
            with model_folder_lock(tmp_path / "m"):
                pass
    with model_folder_lock(tmp_path / "m"):  # released: usable again
        pass


def test_a_full_disk_keeps_the_previous_model(tmp_path):
    """ENOSPC while saving: an OSError, and the model on disk is still the old, loadable one."""
    import shutil as _shutil

    if os.geteuid() != 0 or _shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        small, card = _net_and_card()
        out = save_model(small, card, disk / "m")
        _, strides = plan_patch_size((16, 16))
        spec = plan_network(2, 1, 2, strides, base_channels=32, max_channels=256)
        big = build_network(spec)
        big_card = ModelCard.from_dict(dict(card.to_dict(), network=spec, task="Big"))
        with pytest.raises(OSError):
            save_model(big, big_card, out)
        assert read_card(out).task == "Blobs"
        load_model(out)
        assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
