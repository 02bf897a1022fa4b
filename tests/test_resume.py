"""A training job killed mid-run resumes from its last checkpoint when its target is
asked for again, and ends in exactly the state of an uninterrupted run; a checkpoint
made with other data or settings is never resumed."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import TINY
from ptycho_lib.config import DataConfig, ModelConfig, TrainConfig
from ptycho_lib.io import write_npz
from ptycho_lib.resume import fingerprint, resume_point
from ptycho_lib.scan import Scan
from ptycho_lib.simulate import simulate
from helpers import copy_repo, snakemake

# 12 optimiser steps per epoch: long enough to be killed between epochs
RESUME_CONFIG = {
    "data": {"n_groups": 96},
    "model": {"width": 8},
    "train": {"max_epochs": 6, "batch_size": 8},
    "execution": {"threads": 1},
}


def _epoch(ckpt):
    try:
        return torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # not there yet
        return -1


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    work = copy_repo(tmp_path)
    scan = simulate(TINY)
    write_npz(work / "resources/tiny.npz", scan)
    write_npz(work / "resources/again.npz", scan)  # the same scan, trained without interruption
    (work / "resume.yaml").write_text(yaml.safe_dump(RESUME_CONFIG))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    job = subprocess.Popen([sys.executable, "-m", "snakemake", "results/train/tiny/last.ckpt", "--cores", "1",
                            "--configfile", "resume.yaml"], cwd=work, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = work / "results/train/tiny/.work"
    deadline = time.time() + 300
    while _epoch(scratch / "last.ckpt") < 1 and job.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)  # Snakemake and the training job with it
    job.wait()
    killed_after = _epoch(scratch / "last.ckpt") + 1
    assert 2 <= killed_after < 6, "the job should have been killed between epochs 2 and 6"
    assert not (work / "results/train/tiny/last.ckpt").exists()  # no plausible-looking output

    snakemake(work, "--unlock")
    snakemake(work, "results/train/tiny/last.ckpt", "results/train/again/last.ckpt", "--cores", "2",
              "--configfile", "resume.yaml")
    log = (work / "logs/train/tiny.log").read_text()
    resumed_after = int(log.split("resuming from the checkpoint saved after epoch ")[1].split()[0])
    assert killed_after <= resumed_after < 6  # the last checkpoint, not from scratch
    assert "resuming" not in (work / "logs/train/again.log").read_text()
    assert not scratch.exists()

    resumed = torch.load(work / "results/train/tiny/last.ckpt", weights_only=True)
    straight = torch.load(work / "results/train/again/last.ckpt", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 5 and resumed["global_step"] == straight["global_step"]
    for name, tensor in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    for a, b in zip(resumed["optimizer_states"][0]["state"].values(),
                    straight["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the loss history is complete: the epochs before the kill are kept
    assert (work / "results/train/tiny/metrics.csv").read_text() == \
        (work / "results/train/again/metrics.csv").read_text()


def _scan(seed=0):
    rng = np.random.default_rng(seed)
    return Scan(rng.random((4, 16, 16), dtype=np.float32), np.ones((16, 16), np.complex64),
                np.arange(4.0), np.arange(4.0), 1e5)


def _configs(**train):
    return [DataConfig(), ModelConfig(), TrainConfig(**train)]


@pytest.fixture
def interrupted(tmp_path):
    """A scratch directory as a killed run leaves it: fingerprint and checkpoint."""
    work = tmp_path / ".work"
    assert resume_point(work, fingerprint([_scan()], _configs(), "cpu")) is None
    torch.save({"epoch": 2, "state_dict": {}}, work / "last.ckpt")
    return work


def test_same_data_and_settings_resume(interrupted):
    assert resume_point(interrupted, fingerprint([_scan()], _configs(), "cpu")) == interrupted / "last.ckpt"


@pytest.mark.parametrize("change", ["data", "setting", "accelerator", "damaged checkpoint"])
def test_anything_else_starts_afresh(interrupted, change, caplog):
    scan, configs, accelerator = _scan(), _configs(), "cpu"
    if change == "data":
        scan = _scan(seed=1)
    elif change == "setting":
        configs = _configs(learning_rate=2e-3)
    elif change == "accelerator":
        accelerator = "cuda"
    else:
        (interrupted / "last.ckpt").write_bytes((interrupted / "last.ckpt").read_bytes()[:40])
    assert resume_point(interrupted, fingerprint([scan], configs, accelerator)) is None
    assert sorted(p.name for p in interrupted.iterdir()) == ["fingerprint.json"]
    expected = "unreadable" if change == "damaged checkpoint" else "it used other data or settings"
    assert "discarding an unfinished run" in caplog.text and expected in caplog.text
