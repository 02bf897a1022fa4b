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


FULL_DISK_WRITER = """
import errno, os, sys
from ptycho_lib import cli
from ptycho_lib.io import atomic_path

def main(argv):
    with atomic_path(argv[0]) as tmp:
        tmp.write_bytes(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() gives on a full disk

cli.run(main)
"""

OUT_OF_MEMORY = """
import sys
from ptycho_lib import cli

def main(argv):
    raise MemoryError()

cli.run(main)
"""


def test_a_full_disk_is_one_line_naming_the_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "results" / "scan.npz"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_WRITER, str(target)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {target}: cannot be written: no space left on the device (free some "
                                   "space and rerun)")
    assert list(target.parent.iterdir()) == []


def test_running_out_of_memory_names_the_input(tmp_path):
    scan = tmp_path / "scan.npz"
    scan.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, "--flag", str(scan), str(tmp_path / "out.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {scan}: not enough memory"
