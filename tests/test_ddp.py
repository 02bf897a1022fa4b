"""--devices 2 on the CPU: Lightning DDP with two processes over gloo, through the real
command line (DDP reruns it in the second process)."""

import subprocess
import sys

import torch

from conftest import REPO
from knobs import canonical_tiny, fast_without, metrics


def test_two_cpu_processes_split_each_epoch_and_warn_once(tmp_path):
    data = canonical_tiny(tmp_path / "tiny.npz")
    out = tmp_path / "ddp"
    argv = fast_without("--accelerator", "--threads")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/train.py"), "--train-data-file", str(data), "--output-dir", str(out),
         *argv, "--batch-size", "4", "--devices", "2", "--threads", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr and "Starting with 2 processes" in proc.stderr
    assert proc.stderr.count("deprecated: --device") == 1  # the second process stays quiet
    # 16 groups in batches of 4: one process takes 4 steps per epoch, each of two takes 2
    rows = metrics(out)
    assert [int(r["step"]) for r in rows] == [2, 4]
    last = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4 and best["selection"]["monitor"] == "val_loss"
    assert not (out / ".work").exists()
