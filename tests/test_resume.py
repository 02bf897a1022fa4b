"""A training job killed mid-run resumes from its last checkpoint when its target is
asked for again, and ends in exactly the state of an uninterrupted run; a checkpoint
made with other data or settings is never resumed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ptycho_lib
from conftest import REPO, TINY
from ptycho_lib.config import DataConfig, ModelConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.io import write_npz
from ptycho_lib.resume import code_digest, exclusive, fingerprint, resume_point
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


def _start_training(tmp_path):
    """A repository with scans tiny and again (the same scan) and Snakemake training
    tiny, stopped once its second epoch is saved; returns (repository, Snakemake)."""
    work = copy_repo(tmp_path)
    scan = simulate(TINY)
    write_npz(work / "resources/tiny.npz", scan)
    write_npz(work / "resources/again.npz", scan)  # the same scan, trained without interruption
    (work / "resume.yaml").write_text(yaml.safe_dump(RESUME_CONFIG))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    job = subprocess.Popen([sys.executable, "-m", "snakemake", "results/train/tiny/last.ckpt", "--cores", "1",
                            "--configfile", "resume.yaml"], cwd=work, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _epoch(work / "results/train/tiny/.work/last.ckpt") < 1 and job.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    return work, job


def _same_training(work):
    """tiny (interrupted, rerun) ended in exactly the state and history of again."""
    resumed = torch.load(work / "results/train/tiny/last.ckpt", weights_only=True)
    straight = torch.load(work / "results/train/again/last.ckpt", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 5 and resumed["global_step"] == straight["global_step"]
    for name, tensor in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    for a, b in zip(resumed["optimizer_states"][0]["state"].values(),
                    straight["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the loss history is complete: every epoch once, those before the kill kept
    assert (work / "results/train/tiny/metrics.csv").read_text() == \
        (work / "results/train/again/metrics.csv").read_text()


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    work, job = _start_training(tmp_path)
    scratch = work / "results/train/tiny/.work"
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
    _same_training(work)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_killing_snakemake_alone_stops_its_trainer_and_the_rerun_matches(tmp_path):
    """kill -9 of the Snakemake process only: its trainer notices and stops without
    writing outputs; the rerun resumes and ends as an uninterrupted run."""
    work, job = _start_training(tmp_path)
    trainer = int((work / "results/train/tiny/.lock").read_text())
    assert _alive(trainer)
    os.kill(job.pid, signal.SIGKILL)  # Snakemake alone: its shell and the trainer live on
    job.wait()
    deadline = time.time() + 60
    while _alive(trainer) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(trainer), "the orphaned trainer kept running"
    assert not (work / "results/train/tiny/last.ckpt").exists()  # it wrote no outputs
    snakemake(work, "--unlock")
    snakemake(work, "results/train/tiny/last.ckpt", "results/train/again/last.ckpt", "--cores", "2",
              "--configfile", "resume.yaml", "--rerun-incomplete")
    assert "resuming from the checkpoint saved after epoch" in (work / "logs/train/tiny.log").read_text()
    _same_training(work)


def test_a_second_training_in_the_same_folder_is_refused(tmp_path):
    scan = tmp_path / "tiny.npz"
    write_npz(scan, canonicalise(simulate(TINY), scan), stored=("diffraction",))
    out = tmp_path / "train"
    with exclusive(out):
        proc = subprocess.run([sys.executable, "-m", "scripts.train", "--train-data-file", str(scan),
                               "--output-dir", str(out), "--max-epochs", "1", "--quiet"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the holder's, nothing of the refused run
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (f"error: {out}: another training (process {os.getpid()}) is "
                                                    "running in this folder; wait for it or stop it, then rerun")
    assert list(out.iterdir()) == []  # the holder removed its lock at the end


def test_a_library_edit_discards_the_unfinished_run(tmp_path):
    """Killed, the library edited, rerun: training starts over instead of resuming
    a checkpoint that the old code made."""
    work, job = _start_training(tmp_path)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert (work / "results/train/tiny/.work/last.ckpt").exists()
    with open(work / "ptycho_lib/resume.py", "a") as f:
        f.write("# an edit\n")
    snakemake(work, "--unlock")
    snakemake(work, "results/train/tiny/last.ckpt", "--cores", "1", "--configfile", "resume.yaml",
              "--rerun-incomplete")
    log = (work / "logs/train/tiny.log").read_text()
    assert "resuming" not in log and "it used other data, settings or code" in log
    rows = (work / "results/train/tiny/metrics.csv").read_text().strip().splitlines()
    epochs = [int(float(r.split(",")[0])) for r in rows[1:]]
    assert epochs == sorted(set(epochs)) == list(range(6))  # every epoch once, from the start


def test_the_code_digest_changes_with_any_library_source(tmp_path):
    import shutil
    copy = shutil.copytree(Path(ptycho_lib.__file__).parent, tmp_path / "lib")
    before = code_digest(copy)
    assert before == code_digest() == fingerprint([_scan()], _configs(), "cpu")["code"]
    (copy / "render.py").write_text((copy / "render.py").read_text() + "\n")
    assert code_digest(copy) != before


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
    expected = "unreadable" if change == "damaged checkpoint" else "it used other data, settings or code"
    assert "discarding an unfinished run" in caplog.text and expected in caplog.text
