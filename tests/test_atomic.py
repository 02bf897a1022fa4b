"""Outputs appear whole or not at all: a job killed while writing leaves no
plausible-looking file under the target's name, and a failed checkpoint write keeps
the previous checkpoint."""

import subprocess
import sys

import pytest
import torch

from ptycho_lib.resume import AtomicCheckpointIO

KILLED_WRITER = """
import os, signal, sys
from ptycho_lib.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half of a file")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_mid_write_leaves_no_target(tmp_path):
    target = tmp_path / "results" / "scan.npz"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True)
    assert proc.returncode == -9
    assert not target.exists()
    # only a hidden temporary beside the target, never in a shared directory
    assert [p.name.startswith(".scan.npz.") and p.suffix == ".tmp" for p in target.parent.iterdir()] == [True]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    ckpt = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, ckpt)
    with pytest.raises(Exception):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3), "bad": lambda: 0}, ckpt)  # cannot be pickled
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
