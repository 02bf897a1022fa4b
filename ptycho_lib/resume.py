"""Interrupted training picks up where it stopped, and only when that is safe.

Training runs in a scratch directory (`.work` beside the outputs). Lightning writes a
checkpoint there after every epoch, atomically, next to its target. The scratch
directory also holds a fingerprint of everything that decides the result (the data
trained and validated on, every data/model/training setting, the accelerator and the
library version). When training starts and finds a checkpoint with the same
fingerprint, it resumes from it; anything else is discarded and training starts
from scratch. The data are shuffled from (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one and ends in the same state.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import Sampler

from . import __version__
from .io import InputError, atomic_path

log = logging.getLogger(__name__)

LOCK = ".lock"
FINGERPRINT = "fingerprint.json"
CHECKPOINT = "last.ckpt"
METRICS = "metrics.csv"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's own writer goes through a file in $TMPDIR and a copy; this one writes
    a temporary file beside the checkpoint and renames it, so a kill never leaves a
    partial checkpoint and nothing is written outside the training directory."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class EpochShuffle(Sampler[int]):
    """A permutation drawn from (seed, epoch): the order of an epoch does not depend on
    how many epochs this process has run (Lightning calls set_epoch every epoch).
    Under DDP (a process group of N ranks) rank r takes the r-th `batch_size` of every
    N x batch_size block: step k of the N ranks together holds exactly the groups of
    step k of one device with batch N x batch_size (a ragged last block is dropped)."""

    def __init__(self, size: int, seed: int, batch_size: int = 1):
        self.size, self.seed, self.batch_size, self.epoch = size, seed, batch_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _ranks() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        _, world = self._ranks()
        return self.size if world == 1 else self.size // (world * self.batch_size) * self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        rank, world = self._ranks()
        if world > 1:
            block = world * self.batch_size
            order = order[: self.size // block * block].reshape(-1, world, self.batch_size)[:, rank].reshape(-1)
        return iter(order.tolist())


def _array_digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def code_digest(folder: Path = Path(__file__).parent) -> str:
    """SHA-256 over the library's Python sources (name and bytes of each)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(scans, configs, accelerator: str, init: dict | None = None, teacher=None) -> dict:
    """What a checkpoint must share with this run to be resumed: the arrays of every
    scan used (training and validation), every setting, the weights started from
    (`init`, when adapting a model) and the patches taught (`teacher`), the device
    kind, the version and the code."""
    return {
        "code": code_digest(),
        "data": [_array_digest(s.amplitude, s.probe, s.x, s.y, np.float64(s.nphotons),
                               *(() if s.bad_pixels is None else (s.bad_pixels,))) for s in scans if s],
        "init": _array_digest(*(init[k].numpy() for k in sorted(init))) if init else None,
        **({"teacher": _array_digest(teacher.numpy())} if teacher is not None else {}),
        "config": {type(c).__name__: asdict(c) for c in configs},
        "accelerator": accelerator,
        "library_version": __version__,
    }


LAUNCH = "launch.json"  # the launcher's decision, for the tasks SLURM starts beside it


def _srun_launch() -> str | None:
    """The identity of this start of a training that srun launched as several tasks
    (job, step, restart count), None otherwise."""
    if int(os.environ.get("SLURM_NTASKS", "1")) < 2 or "SLURM_PROCID" not in os.environ:
        return None
    return ".".join(os.environ.get(k, "") for k in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT"))


def announce(work: Path, ckpt: Path | None) -> None:
    """Rank 0 of an srun launch tells the other tasks whether it resumes."""
    launch = _srun_launch()
    if launch is not None:
        with atomic_path(Path(work) / LAUNCH) as tmp:
            tmp.write_text(json.dumps({"launch": launch, "resume": ckpt is not None}))


def launcher_decision(work: Path, timeout: float = 600) -> Path | None:
    """The checkpoint the other processes resume from: rank 0's choice. Lightning starts
    its extra processes after rank 0 has chosen (the checkpoint is there or not);
    tasks that srun starts together wait for rank 0's announcement of this launch."""
    work = Path(work)
    launch = _srun_launch()
    deadline = time.monotonic() + timeout
    while launch is not None:
        try:
            said = json.loads((work / LAUNCH).read_text())
            if said.get("launch") == launch:
                return work / CHECKPOINT if said["resume"] else None
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{work}: rank 0 of this training said nothing in {timeout:.0f} s")
        time.sleep(0.2)
    return work / CHECKPOINT if (work / CHECKPOINT).is_file() else None


def _checkpoint_epoch(path: Path) -> int | None:
    """Epoch stored in a checkpoint (read without unpickling code), None if unreadable."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # any damage means: do not resume from it
        return None


def resume_point(work: Path, print_: dict) -> Path | None:
    """The checkpoint in `work` to resume from, or None after preparing an empty `work`
    for a fresh run (with the fingerprint written into it)."""
    work = Path(work)
    ckpt, stamp = work / CHECKPOINT, work / FINGERPRINT
    if ckpt.is_file():
        try:
            same = json.loads(stamp.read_text()) == json.loads(json.dumps(print_))
        except (OSError, ValueError):
            same = False
        epoch = _checkpoint_epoch(ckpt) if same else None
        if epoch is not None:
            log.info("resuming from the checkpoint saved after epoch %d in %s", epoch + 1, work)
            _keep_earlier_metrics(work, epoch)
            return ckpt
        log.warning("discarding an unfinished run in %s: %s", work,
                    "its checkpoint is unreadable" if same else "it used other data, settings or code")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps(print_, indent=2, sort_keys=True) + "\n")
    return None


def _keep_earlier_metrics(work: Path, epoch: int) -> None:
    """metrics.csv gains a row per epoch: keep the rows of the epochs the checkpoint
    holds (0..epoch), dropping any written after it, so the resumed run appends to a
    table that matches the checkpoint."""
    src = work / METRICS
    if not src.is_file():
        return
    rows = list(csv.reader(io.StringIO(src.read_text())))
    if not rows or "epoch" not in rows[0]:
        return
    col = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and _epoch_of(r[col], epoch + 1) <= epoch]
    with atomic_path(src) as tmp:
        tmp.write_text(_csv_text(kept))


def _epoch_of(cell: str, default: int) -> int:
    """The epoch of a metrics row; a row cut short by the kill counts as unfinished."""
    try:
        return int(float(cell))
    except ValueError:
        return default


def _csv_text(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def finish(work: Path, out_dir: Path, names=(CHECKPOINT, METRICS)) -> None:
    """Move the finished run's files (each a rename) into out_dir, replacing earlier
    ones, then remove the scratch directory."""
    work, out_dir = Path(work), Path(out_dir)
    for name in names:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        if (work / name).exists():
            (work / name).replace(target)
    shutil.rmtree(work, ignore_errors=True)


@contextmanager
def exclusive(out_dir: Path, wait: float = 0):
    """Hold a lock on the training output directory while training (the file .lock,
    holding the trainer's PID, removed at the end); a second training there finds it
    taken and refuses, after waiting up to `wait` seconds for it (a retried cluster job
    whose cancelled predecessor is still being killed). The lock goes with its process,
    so a killed run leaves at most a stale file that the next run takes over."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise InputError(out_dir, f"another training (process {owner}) is running in this folder; wait for "
                             "it or stop it, then rerun") from None
        try:  # the file may have been removed by its last holder between our open and lock
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


_watched = None  # the parent already watched (one watcher per process)


def _parent_of(pid: int) -> int | None:
    """A process's parent, from /proc (None where that cannot be read)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def stop_when_orphaned(period: float = 0.5) -> None:
    """Stop this process (SIGTERM: the checkpoint of the last finished epoch stays for
    a resume) once its parent or grandparent dies: Snakemake runs a job's command
    through a shell, so when Snakemake is killed the shell lives on and it is the
    grandparent that goes. Watches from a daemon thread, once per process."""
    global _watched
    parent = os.getppid()
    if parent == 1 or _watched == parent:
        return
    _watched = parent
    grand = _parent_of(parent)

    def alive() -> bool:
        return os.getppid() == parent and (grand in (None, 1) or _parent_of(parent) == grand)

    def watch():
        while alive():
            time.sleep(period)
        log.warning("the process that started this training has gone; stopping (a rerun resumes it)")
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
