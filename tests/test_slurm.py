"""The tiny pipeline submitted through the SLURM profile to a real single-node SLURM.

A throw-away cluster on loopback from Debian's packages (slurm-wlm, munge): munged as
the munge user, slurmctld and slurmd, all in the foreground on free ports with their
files in a temporary folder, stopped by PID afterwards. Its partitions and its one
(fake, File=/dev/null) GPU take their names from the profile, so the GPU requests of
train and recon go through sbatch exactly as written there. Skipped where the packages
are missing, except in CI (CI=true), where it fails instead.
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY
from ptycho_lib.io import read_npz, write_npz
from ptycho_lib.simulate import simulate
from helpers import TINY_CONFIG, copy_repo, snakemake

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue")
PROFILE = REPO / "workflow/profiles/slurm/config.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




class Cluster:
    """munged + slurmctld + slurmd; `env` points the SLURM commands at it."""

    def __init__(self, root: Path, partitions: list[str], gpu_model: str):
        self.root, self.procs = root, []
        host = socket.gethostname().split(".")[0]
        node = [w for w in subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
                .stdout.split() if w.split("=")[0] in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                      "ThreadsPerCore", "RealMemory")]
        (root / "state").mkdir()
        (root / "spool").mkdir()
        munge = root / "munge"
        munge.mkdir()
        os.chmod(munge, 0o755)  # munged insists others can reach its socket
        shutil.copy(self._munge_key(), munge / "munge.key")
        os.chmod(munge / "munge.key", 0o400)
        user = pwd.getpwnam("munge")
        for p in (munge, munge / "munge.key"):
            os.chown(p, user.pw_uid, user.pw_gid)
        self.socket = munge / "munge.socket"
        gres = f"gpu:{gpu_model}:1" if gpu_model else "gpu:1"
        lines = [
            "ClusterName=pytest", f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.socket}",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "ReturnToService=2", "MinJobAge=600", "GresTypes=gpu",
            f"NodeName={host} {' '.join(node)} Gres={gres} State=UNKNOWN",
        ] + [f"PartitionName={p} Nodes={host} MaxTime=INFINITE State=UP{' Default=YES' if i == 0 else ''}"
             for i, p in enumerate(partitions)]
        (root / "slurm.conf").write_text("\n".join(lines) + "\n")
        (root / "gres.conf").write_text(
            f"NodeName={host} Name=gpu{' Type=' + gpu_model if gpu_model else ''} File=/dev/null\n")
        # The commands find this cluster through SLURM_CONF, but the job step drops
        # SLURM_* before its nested `srun`: a PATH entry hands that srun the variable.
        shim = root / "bin"
        shim.mkdir()
        (shim / "srun").write_text(f"#!/bin/sh\nSLURM_CONF={root}/slurm.conf exec {shutil.which('srun')} \"$@\"\n")
        os.chmod(shim / "srun", 0o755)
        path = f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "PATH": path}

    @staticmethod
    def _munge_key() -> Path:
        key = Path("/etc/munge/munge.key")
        if not key.exists():  # the package normally makes one
            subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True)
        return key

    def start(self):
        m = self.root / "munge"
        self._spawn(["munged", "--foreground", f"--socket={self.socket}", f"--key-file={m}/munge.key",
                     f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/seed"],
                    user="munge", group="munge", extra_groups=[])
        self.wait_for(self.socket.exists, "munged")
        self._spawn(["slurmctld", "-D", "-i"], log="slurmctld.out")
        self._spawn(["slurmd", "-D"], log="slurmd.out")
        self.wait_for(lambda: self.run("sinfo", "-h", "-o", "%t").stdout.split() in (["idle"], ["idle"] * 2),
                 "the node to be idle")

    def wait_for(self, check, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end and all(p.poll() is None for p in self.procs):
            if check():
                return
            time.sleep(0.5)
        raise AssertionError(f"no {what} after {timeout} s or a daemon died:\n{self.logs()}")

    def _spawn(self, cmd, log=None, **kw):
        out = open(self.root / (log or f"{cmd[0]}.out"), "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, **kw))
        if self.procs[-1].poll() is not None:
            raise AssertionError(f"{cmd[0]} exited at once")

    def run(self, *cmd) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True)

    def stop(self):
        if self.procs[1:]:
            self.run("scancel", "--full", "--quiet", "--user", pwd.getpwuid(os.getuid()).pw_name)
        for proc in reversed(self.procs):  # slurmd, slurmctld, munged: only what we started
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        files = sorted(self.root.glob("*.out")) + sorted(self.root.glob("**/*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in files)


@pytest.fixture(scope="module")
def cluster():
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing or os.geteuid() != 0:
        why = f"missing {missing} (apt-get install slurm-wlm munge)" if missing else "needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM test cannot run in CI: {why}")
        pytest.skip(why)
    profile = yaml.safe_load(PROFILE.read_text())
    train = profile["set-resources"]["train"]
    partitions = [profile["default-resources"]["slurm_partition"], train["slurm_partition"]]
    root = Path(tempfile.mkdtemp(prefix="slurm-test-"))
    os.chmod(root, 0o755)  # munged (user munge) must reach its folder
    c = Cluster(root, list(dict.fromkeys(partitions)), train.get("gpu_model"))
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_tiny_pipeline_runs_as_slurm_jobs_with_the_profiles_gpu_requests(cluster, tmp_path):
    work = copy_repo(tmp_path / "repo")
    write_npz(work / "resources/tiny.npz", simulate(TINY))
    small = {"mem_mb": 500, "runtime": 10}
    (work / "tiny.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "resources": {"train": small, "infer": small}}))
    cmd = ["timeout", "-s", "INT", "900", sys.executable, "-m", "snakemake", "results/recon/tiny.png",
           "--workflow-profile", "slurm", "--slurm-init-seconds-before-status-checks", "5",
           "--slurm-keep-successful-logs", "--configfile", "tiny.yaml"]
    proc = subprocess.run(cmd, cwd=work, env=cluster.env, capture_output=True, text=True)
    slurm_logs = work / ".snakemake/slurm_logs"
    job_logs = "".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in slurm_logs.rglob("*.log"))
    assert proc.returncode == 0, f"{(proc.stdout + proc.stderr)[-3000:]}\n{job_logs[-6000:]}\n{cluster.logs()}"

    assert (work / "results/recon/tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_npz(work / "results/recon/tiny.npz")["object"].ndim == 2
    again = subprocess.run(cmd[4:] + ["-n"], cwd=work, env=cluster.env, capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
    # Every stage ran as a SLURM job (a log each), all completed, and train and recon
    # went to the profile's GPU partition asking for its GPU model.
    rules = sorted(p.relative_to(slurm_logs).parts[0].removeprefix("rule_") for p in slurm_logs.rglob("*.log"))
    assert rules == sorted(["validate", "transpose", "train", "export", "recon", "render"]), rules
    jobs = [dict(f.split("=", 1) for f in line.split() if "=" in f)
            for line in cluster.run("scontrol", "show", "job", "-o").stdout.splitlines()]
    assert sorted(j["JobState"] for j in jobs) == ["COMPLETED"] * 6, jobs
    cpu_partition, gpu_partition = partitions_of(PROFILE)
    placed = {j["Comment"].split("_")[1]: (j["Partition"], j.get("TresPerJob", "")) for j in jobs}
    gpu = f"gpu:{gpu_model(PROFILE)}:1"
    assert placed == {"validate": (cpu_partition, ""), "transpose": (cpu_partition, ""),
                      "train": (gpu_partition, f"gres:{gpu}"), "export": (cpu_partition, ""),
                      "recon": (gpu_partition, f"gres:{gpu}"), "render": (cpu_partition, "")}, jobs


def partitions_of(profile: Path) -> list[str]:
    p = yaml.safe_load(profile.read_text())
    return [p["default-resources"]["slurm_partition"], p["set-resources"]["train"]["slurm_partition"]]


def gpu_model(profile: Path) -> str:
    return yaml.safe_load(profile.read_text())["set-resources"]["train"]["gpu_model"]


# 96 groups per epoch: in batches of 8, 12 optimiser steps on one task, 6 on each of two
TASKS_CONFIG = {
    "data": {"n_groups": 96},
    "model": {"width": 8},
    "train": {"batch_size": 8, "max_epochs": 8},
    "infer": {"batch_size": 16},
    "execution": {"accelerator": "cpu", "threads": 2},
    "resources": {"train": {"mem_mb": 1500, "runtime": 20}, "infer": {"mem_mb": 500, "runtime": 10}},
}


def _config(work, devices, batch_size=8):
    cfg = work / f"tasks{devices}x{batch_size}.yaml"
    cfg.write_text(yaml.safe_dump({**TASKS_CONFIG, "execution": {**TASKS_CONFIG["execution"], "devices": devices},
                                   "train": {**TASKS_CONFIG["train"], "batch_size": batch_size}}))
    return cfg.name


def _submit(cluster, work, target, devices, batch_size=8, background=False):
    cmd = ["timeout", "-s", "INT", "600", sys.executable, "-m", "snakemake", target, "--workflow-profile", "slurm",
           "--slurm-init-seconds-before-status-checks", "5", "--slurm-keep-successful-logs",
           "--configfile", _config(work, devices, batch_size)]
    if background:
        return subprocess.Popen(cmd, cwd=work, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    proc = subprocess.run(cmd, cwd=work, env=cluster.env, capture_output=True, text=True)
    logs = "".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in (work / ".snakemake/slurm_logs").rglob("*.log"))
    assert proc.returncode == 0, f"{(proc.stdout + proc.stderr)[-3000:]}\n{logs[-6000:]}\n{cluster.logs()}"
    return proc


def _steps(work, model):
    import csv
    rows = list(csv.DictReader((work / f"results/train/{model}/metrics.csv").open()))
    return [int(r["epoch"]) for r in rows], [int(r["step"]) for r in rows], [float(r["train_loss"]) for r in rows]


def test_one_training_as_two_slurm_tasks_matches_one_task(cluster, tmp_path):
    """devices: 2 under the profile: srun starts two tasks, Lightning takes its two ranks
    from SLURM, each epoch takes half the steps of one task, and the training follows the
    one-task training on the same global batch (2 x 8 groups a step). Only the
    training goes through SLURM; the stages around it run locally."""
    work = copy_repo(tmp_path / "repo")
    scan = simulate(TINY)
    for name in ("eight", "one", "two"):
        write_npz(work / f"resources/{name}.npz", scan)
    local = ("--cores", "2", "--configfile")
    snakemake(work, "results/train/eight/last.ckpt", *local, _config(work, 1))
    snakemake(work, "results/metrics/recon/one.json", *local, _config(work, 1, batch_size=16))
    snakemake(work, "results/canonical/two.npz", *local, _config(work, 2))
    _submit(cluster, work, "results/train/two/last.ckpt", 2)
    snakemake(work, "results/metrics/recon/two.json", *local, _config(work, 2))
    assert not (work / ".snakemake/slurm_logs/rule_train/one").exists()
    log = (work / "logs/train/two.log").read_text()
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
    assert "is available on your system but is not used" not in log  # SLURM started the tasks, not Lightning
    assert "MEMBER" not in (work / "logs/train/one.log").read_text()
    (epochs8, steps8, loss8), (epochs1, steps1, loss1), (epochs2, steps2, loss2) = (
        _steps(work, m) for m in ("eight", "one", "two"))
    assert epochs8 == epochs1 == epochs2 == list(range(8))
    assert steps8 == [12 * (e + 1) for e in epochs8] and steps2 == [6 * (e + 1) for e in epochs2] == steps1
    # the two tasks train as one task on their global batch does: the same training loss
    # every epoch, up to the batch norms (on a CPU each task normalises by its own half of
    # the batch) and rounding; batches of 8 on one task end ~40 % lower. The networks are
    # barely trained after 8 epochs of this tiny scan: their SSIM (~0.15) is rounding's chaos.
    assert all(abs(b / a - 1) <= 0.02 for a, b in zip(loss1, loss2)), (loss1, loss2)
    assert loss8[-1] < 0.8 * loss1[-1], (loss8, loss1)
    jobs = [dict(f.split("=", 1) for f in line.split() if "=" in f)
            for line in cluster.run("scontrol", "show", "job", "-o").stdout.splitlines()]
    train = [j for j in jobs if "rule_train_wildcards_two" in j.get("Comment", "")]
    assert [j["NumTasks"] for j in train] == ["2"], train


def test_a_two_task_training_killed_by_slurm_is_retried_and_resumes(cluster, tmp_path):
    work = copy_repo(tmp_path / "repo")
    write_npz(work / "resources/three.npz", simulate(TINY))
    snakemake(work, "results/canonical/three.npz", "--cores", "2", "--configfile", _config(work, 2))
    job = _submit(cluster, work, "results/train/three/last.ckpt", 2, background=True)
    scratch = work / "results/train/three/.work/last.ckpt"
    deadline = time.time() + 300
    while _epoch(scratch) < 1 and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    queue = cluster.run("squeue", "-h", "-o", "%i %k").stdout.split("\n")
    train = [line.split()[0] for line in queue if "rule_train" in line]
    assert train, queue
    cluster.run("scancel", train[0])  # as a preemption or a time-out would
    out, _ = job.communicate(timeout=600)
    assert job.returncode == 0, out[-4000:] + cluster.logs()
    assert "resuming from the checkpoint saved after epoch" in (work / "logs/train/three.log").read_text()
    epochs, steps, _ = _steps(work, "three")
    assert epochs == list(range(8)) and steps == [6 * (e + 1) for e in epochs]


def _epoch(ckpt):
    import torch
    try:
        return torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # not there yet
        return -1
