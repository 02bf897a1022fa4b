"""Execution plumbing of training and inference: the device, the data loaders, the
Lightning callbacks (checkpoints, early stopping, the per-epoch table) and loggers."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from .config import ExecConfig, TrainConfig

log = logging.getLogger(__name__)


def pick_accelerator(requested: str, devices: int = 1) -> str:
    """Lightning accelerator name for the request; 'auto' means CUDA, else MPS, else
    CPU, and the choice is logged."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        picked = "cuda" if cuda else "mps" if mps else "cpu"
        found = (f"{torch.cuda.device_count()} CUDA device(s), first {torch.cuda.get_device_name(0)}" if cuda
                 else "an MPS device" if mps else "no CUDA or MPS device")
        log.info("--accelerator auto: using %s (%s)", picked, found)
        requested = picked
    if requested in ("gpu", "cuda"):
        if not cuda:
            raise RuntimeError(f"--accelerator {requested} was requested but no CUDA device is available")
        if devices > torch.cuda.device_count():
            raise RuntimeError(f"--devices {devices} but only {torch.cuda.device_count()} CUDA device(s) are visible")
        return "cuda"
    if requested == "mps" and not mps:
        raise RuntimeError("--accelerator mps was requested but no MPS device is available")
    return requested


def native_bf16(accelerator: str) -> bool:
    """Whether the device computes bfloat16 natively: a CUDA device that says so, or an
    x86 CPU with AVX512-BF16 or AMX (elsewhere bf16 is emulated and slower than fp32)."""
    if accelerator == "cuda":
        return torch.cuda.is_bf16_supported()
    if accelerator != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, accelerator: str) -> bool:
    """Train in bf16 mixed precision? 'auto' decides by the hardware (and says so)."""
    if precision != "auto":
        return precision == "bf16"
    native = native_bf16(accelerator)
    log.info("--precision auto: %s (%s bf16 on this %s)", "bf16" if native else "32",
             "native" if native else "no native", accelerator)
    return native


def torch_threads(execution: ExecConfig, processes: int = 1) -> int:
    """Intra-op threads per process: the job's cores less those the loader workers
    occupy, shared by the training processes (several for DDP on the CPU)."""
    return max(1, (execution.threads - execution.num_workers) // processes)


def loader_options(execution: ExecConfig) -> dict:
    """DataLoader keyword arguments for the worker settings."""
    opts = {"num_workers": execution.num_workers}
    if execution.num_workers:
        persistent = execution.persistent_workers
        opts["persistent_workers"] = True if persistent is None else persistent
        if execution.prefetch_factor:
            opts["prefetch_factor"] = execution.prefetch_factor
    return opts


def make_logger(kind: str, root: Path, name: str):
    """The experiment logger writing under root/logs/, or False for none (the
    optional packages were checked by config.validate)."""
    if kind == "none":
        return False
    logs = root / "logs"
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger
        return CSVLogger(logs, name="csv", version="")
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger
        return TensorBoardLogger(logs, name="tensorboard", version="", default_hp_metric=False)
    from lightning.pytorch.loggers import MLFlowLogger
    # a tracking server named in the environment wins; else a file store beside the run
    # (MLflow 3 keeps file stores working but wants them opted into)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = (logs / "mlruns").resolve().as_uri()
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(experiment_name=name, tracking_uri=uri)


class EpochTable(Callback):
    """metrics.csv: one row per epoch (epoch, step, lr, train_loss, val_loss), written
    whatever --logger says; the pipeline's record of the run."""

    COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss")

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               **{k: f"{float(m[k]):.9g}" for k in self.COLUMNS[2:] if k in m}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.COLUMNS)
            if new:
                w.writeheader()
            w.writerow(row)


def callbacks(cfg: TrainConfig, work: Path) -> list[Callback]:
    """Top-k checkpoints by the monitor in work/checkpoints, early stopping, metrics.csv."""
    top_k = ModelCheckpoint(dirpath=work / "checkpoints", monitor=cfg.checkpoint_monitor, mode=cfg.checkpoint_mode,
                            save_top_k=cfg.checkpoint_save_top_k, auto_insert_metric_name=False,
                            filename="epoch={epoch:03d}-" + cfg.checkpoint_monitor + "={" + cfg.checkpoint_monitor
                            + ":.6g}")
    out = [top_k, EpochTable(work / "metrics.csv")]
    if cfg.early_stop_patience:
        out.append(EarlyStopping(monitor=cfg.checkpoint_monitor, mode=cfg.checkpoint_mode,
                                 patience=cfg.early_stop_patience, verbose=False))
    return out


def best_checkpoint(trainer: L.Trainer) -> ModelCheckpoint:
    return next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor)


def strategy(execution: ExecConfig) -> str:
    """Several devices (or CPU processes) or nodes: DDP. On one machine Lightning starts
    the extra processes itself, each rerunning the command line; under srun, SLURM has
    started one task per device on each node and Lightning takes the ranks from it."""
    tasks = execution.devices * execution.nodes
    if execution.nodes > 1 and os.environ.get("SLURM_NTASKS") != str(tasks):
        raise RuntimeError(f"--nodes {execution.nodes} trains across nodes only as {tasks} SLURM tasks (the train rule "
                           "under the SLURM profile starts them with srun); on one machine use --devices alone")
    return "ddp" if tasks > 1 else "auto"
