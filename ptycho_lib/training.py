"""Training: datasets, the Lightning Trainer and its callbacks, from the typed configs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from .config import DataConfig, ExecConfig, ModelConfig, TrainConfig
from .data import GroupDataset, Scan, input_scale, make_groups, split_rows
from .model import PINN
from .physics import scale_probe
from .resume import AtomicCheckpointIO, EpochShuffle, finish, fingerprint, resume_point


def pick_accelerator(requested: str) -> str:
    """Lightning accelerator name for the request; 'auto' means CUDA, else MPS, else CPU."""
    if requested in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--accelerator {requested} was requested but no CUDA device is available")
        return "cuda"
    if requested == "mps":
        return "mps"
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return "cpu"


def build_datasets(scan: Scan, val_scan: Scan | None, data: DataConfig, seed: int):
    """Training and validation GroupDatasets; validation is a second scan when given,
    else a held-out band of rows of the training scan."""
    scale = input_scale(scan.amplitude)
    if val_scan is None:
        tr, va = split_rows(scan.y, data.val_fraction)
        val_scan = scan
    else:
        tr, va = split_rows(scan.y, 0.0)[0], split_rows(val_scan.y, 0.0)[0]
    train_groups = make_groups(scan.positions[tr], data.gridsize, data.neighbours, data.n_groups, seed)
    sets = [GroupDataset(scan, tr, train_groups, scale)]
    if len(va) >= data.gridsize**2:
        val_groups = make_groups(val_scan.positions[va], data.gridsize, data.neighbours, 0, seed + 1)
        sets.append(GroupDataset(val_scan, va, val_groups, scale))
    else:
        sets.append(None)
    return sets[0], sets[1], scale


def train(scan: Scan, val_scan: Scan | None, out_dir, data: DataConfig, model: ModelConfig,
          train_cfg: TrainConfig, execution: ExecConfig, data_sha256: str = "") -> Path:
    """Fit the PINN; writes last.ckpt and metrics.csv into out_dir and returns last.ckpt."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(execution.threads)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    train_set, val_set, scale = build_datasets(scan, val_scan, data, train_cfg.seed)
    accelerator = pick_accelerator(execution.accelerator)
    logging.getLogger(__name__).info("training on %s: %d groups of %d, validation %s",
                                     accelerator, len(train_set), data.gridsize**2,
                                     len(val_set) if val_set else "none")
    probe = torch.from_numpy(scale_probe(scan.probe.astype("complex128"), scan.nphotons))
    module = PINN(probe, scan.nphotons, scale, scan.n, model.width, data.gridsize, model.loss,
                  train_cfg.learning_rate, data_sha256, model.norm, model.input_transform, model.align_phase)
    loader = dict(num_workers=execution.num_workers, persistent_workers=execution.num_workers > 0)
    # shuffled from (seed, epoch), so a resumed run sees the batches an uninterrupted one would
    train_loader = DataLoader(train_set, batch_size=train_cfg.batch_size,
                              sampler=EpochShuffle(len(train_set), train_cfg.seed), **loader)
    val_loader = DataLoader(val_set, batch_size=4 * train_cfg.batch_size, **loader) if val_set else None
    # write to a scratch directory; only a finished run's files reach out_dir. A run
    # killed earlier with the same data and settings resumes from its last checkpoint.
    work = out_dir / ".work"
    ckpt_path = resume_point(work, fingerprint([scan, val_scan], [data, model, train_cfg], accelerator))
    trainer = L.Trainer(
        max_epochs=train_cfg.max_epochs, accelerator=accelerator, devices=1,
        deterministic=train_cfg.deterministic, logger=CSVLogger(work, name="", version=""),
        callbacks=[ModelCheckpoint(dirpath=work, filename="last", save_top_k=1, monitor=None)],
        enable_progress_bar=not execution.quiet, enable_model_summary=not execution.quiet,
        default_root_dir=work, num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()],
    )
    with warnings.catch_warnings():
        # the data are in memory: worker processes would only add start-up cost
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # the scratch directory holds the resume fingerprint (and a checkpoint on resume)
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    finish(work, out_dir)
    return out_dir / "last.ckpt"
