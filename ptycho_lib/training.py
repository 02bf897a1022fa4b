"""Training: datasets, the Lightning Trainer and its callbacks, from the typed configs."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from . import runtime
from .config import DataConfig, ExecConfig, ModelConfig, TrainConfig, is_launcher_child
from .data import (GroupDataset, ScansDataset, as_batch, input_scale, make_groups, simulate_like,
                   tile_groups)
from .model import PINN
from .physics import scale_probe
from .resume import (AtomicCheckpointIO, EpochShuffle, announce, exclusive, finish, fingerprint, launcher_decision,
                     resume_point, stop_when_orphaned)
from .scan import Scan, split_rows


def build_datasets(scans: list[Scan], val_scan: Scan | None, data: DataConfig, seed: int, scales: list[float],
                   prepare, teacher: torch.Tensor | None = None):
    """Training and validation sets (network inputs made by `prepare`) of one or more
    scans: each scan's groups apart (a group never mixes scans), its patterns scaled by
    its own input scale in `scales` (as inference scales each scan) and its items
    tagged with its index in `scans` (the probe and dose of the loss). Validation is `val_scan` when
    given, else a held-out band of rows of every training scan. The training set adds
    data.simulated_scans scans of random objects made like the scans in turn
    (simulate_like, seeded from `seed`); validation stays on measured data. `teacher`:
    the target patch of every pattern of the one training scan (data.teacher_patches),
    carried by its training and validation groups."""
    if teacher is not None and (len(scans) != 1 or data.simulated_scans):
        raise ValueError("a teacher's patches teach one measured scan: no further or simulated scans")
    train_sets, val_sets = [], []
    for k, (scan, scale) in enumerate(zip(scans, scales)):
        tr, va = split_rows(scan.y, 0.0 if val_scan else data.val_fraction)
        groups = make_groups(scan.positions[tr], data.gridsize, data.neighbours, data.n_groups, seed + 3 * k)
        train_sets.append(GroupDataset(scan, tr, groups, scale, prepare, k, targets=teacher))
        if val_scan is None and len(va) >= data.gridsize**2:
            groups = tile_groups(scan.positions[va], data.gridsize)
            val_sets.append(GroupDataset(scan, va, groups, scale, prepare, k, targets=teacher))
    for j in range(data.simulated_scans):
        k = j % len(scans)
        sim = simulate_like(scans[k], seed=1000 * (seed + 1) + j)
        groups = make_groups(sim.positions, data.gridsize, data.neighbours, data.n_groups, seed + 2 + j)
        train_sets.append(GroupDataset(sim, np.arange(len(sim.x)), groups, scales[k], prepare, k))
    if val_scan is not None:
        va = split_rows(val_scan.y, 0.0)[0]
        groups = tile_groups(val_scan.positions[va], data.gridsize)
        val_sets.append(GroupDataset(val_scan, va, groups, input_scale(val_scan.amplitude), prepare, 0))
    return ScansDataset(train_sets), ScansDataset(val_sets) if val_sets else None


class PreciseBatchNorm(Callback):
    """Recomputes the batch-norm statistics once an epoch, with that epoch's final weights,
    over `sample` training patterns spread evenly through them, before validation and
    checkpointing. The running averages kept while the weights change lag behind them,
    and inference uses those statistics (what that costs: docs/benchmarks.md). A few
    hundred patterns give each channel's mean and variance from ~10^5 pixels; all of a
    scan's would make the refresh a tenth of the epoch."""

    sample = 256

    def __init__(self, train_set: ScansDataset, batch_size: int):
        self.patterns, self.batch_size, self.epoch = train_set.spread_inputs(self.sample), batch_size, None

    def refresh(self, trainer, module) -> None:
        if self.epoch == trainer.current_epoch:
            return
        self.epoch = trainer.current_epoch
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:  # momentum None: a plain average over the batches below
            m.reset_running_stats()
            m.momentum = None
        training = module.training
        module.train()
        with torch.no_grad():
            for s in range(0, len(self.patterns), self.batch_size):
                module.net.from_inputs(self.patterns[s:s + self.batch_size].to(module.device))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        module.train(training)

    def on_validation_epoch_start(self, trainer, module):
        if not trainer.sanity_checking:
            self.refresh(trainer, module)

    def on_train_epoch_end(self, trainer, module):  # runs after validation, before the checkpoints
        self.refresh(trainer, module)


class DataOnDevice(Callback):
    """Keeps the training and validation sets in the GPU's memory when they fit in a
    quarter of what is free, so each batch is gathered there (an H200 trained 12,500
    patterns/s fed group by group from host memory, 29,000 from its own; docs/
    benchmarks.md). Only without loader workers (a worker process cannot hand out
    CUDA tensors)."""

    def __init__(self, *sets: ScansDataset | None):
        self.sets = [s for s in sets if s is not None]

    def on_fit_start(self, trainer, module):
        if module.device.type != "cuda":
            return
        free, _ = torch.cuda.mem_get_info(module.device)
        if sum(s.nbytes() for s in self.sets) < free / 4:
            for s in self.sets:
                s.to(module.device)


def schedule(cfg: TrainConfig) -> dict:
    """The learning-rate schedule the LightningModule builds (saved with its hparams)."""
    return {"name": cfg.scheduler, "step_size": cfg.scheduler_step_size, "gamma": cfg.scheduler_gamma,
            "patience": cfg.scheduler_patience, "min_lr": cfg.scheduler_min_lr,
            "t_max": cfg.scheduler_t_max or cfg.max_epochs, "monitor": cfg.checkpoint_monitor,
            "mode": cfg.checkpoint_mode}


def make_loaders(train_set, val_set, train_cfg: TrainConfig, execution: ExecConfig):
    """Training loader (shuffled by the seed) and validation loader, with the worker,
    prefetch and persistence settings of `execution`."""
    loader = runtime.loader_options(execution)
    if hasattr(train_set, "__getitems__"):  # a ScansDataset: it hands out whole batches
        loader["collate_fn"] = as_batch
    # shuffled from (seed, epoch), so a resumed run sees the batches an uninterrupted one would
    train_loader = DataLoader(train_set, batch_size=train_cfg.batch_size,
                              sampler=EpochShuffle(len(train_set), train_cfg.seed, train_cfg.batch_size), **loader)
    val_loader = DataLoader(val_set, batch_size=4 * train_cfg.batch_size, **loader) if val_set else None
    return train_loader, val_loader


def train(scans: Scan | Sequence[Scan], val_scan: Scan | None, out_dir, data: DataConfig, model: ModelConfig,
          train_cfg: TrainConfig, execution: ExecConfig, data_sha256: str = "",
          callbacks: tuple[Callback, ...] = (), init: dict[str, torch.Tensor] | None = None,
          teacher: torch.Tensor | None = None) -> Path | None:
    """Fit the PINN on one scan or several (scans of one instrument setting: one pattern
    size; their probes and doses may differ). Writes into out_dir: last.ckpt (final
    epoch), best.ckpt (best by the monitor, with a `selection` record), checkpoints/
    (the top k), metrics.csv and logs/ (the --logger output). Returns best.ckpt; None
    in the extra DDP processes. `callbacks` are added to the Trainer's (a benchmark
    scores the network each epoch). `init`: a network's state_dict to start from
    instead of a fresh network (adaptation of a reused model to a new scan; `model`
    must describe that network's architecture). `teacher`: (M, N, N) patches, one per
    pattern of the one scan (data.teacher_patches of a refined reconstruction), that
    the network learns instead of fitting the counts (a taught adaptation, PINN)."""
    out_dir = Path(out_dir)
    scans = [scans] if isinstance(scans, Scan) else list(scans)
    if len({s.n for s in scans}) > 1:
        raise ValueError(f"the training scans have different pattern sizes {sorted({s.n for s in scans})}")
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    accelerator = runtime.pick_accelerator(execution.accelerator, execution.devices)
    torch.set_num_threads(runtime.torch_threads(execution, execution.devices if accelerator == "cpu" else 1))
    probes = [torch.from_numpy(scale_probe(s.probe.astype("complex128"), s.nphotons)) for s in scans]
    scales = [input_scale(s.amplitude) for s in scans]
    module = PINN(torch.stack(probes) if len(scans) > 1 else probes[0], [s.nphotons for s in scans], scales[0],
                  model, data.gridsize, train_cfg.learning_rate, schedule(train_cfg), data_sha256,
                  runtime.use_bf16(train_cfg.precision, accelerator))
    if init is not None:
        start_from(module, init)
    train_set, val_set = build_datasets(scans, val_scan, data, train_cfg.seed, scales, module.net.inputs, teacher)
    if val_set is None and train_cfg.checkpoint_monitor == "val_loss":
        raise ValueError("--checkpoint-monitor val_loss needs validation data: raise --val-fraction, give "
                         "--test_data_file, or monitor train_loss")
    logging.getLogger(__name__).info("training on %s x%d x%d nodes: %d groups of %d from %d scans, validation %s",
                                     accelerator, execution.devices, execution.nodes, len(train_set), data.gridsize**2,
                                     len(train_set.datasets), len(val_set) if val_set else "none")
    train_loader, val_loader = make_loaders(train_set, val_set, train_cfg, execution)
    # write to a scratch directory; only a finished run's files reach out_dir. A run
    # killed earlier with the same data, settings and code resumes from its last
    # checkpoint (decided once, by the launcher; DDP's extra processes follow it).
    out_dir.mkdir(parents=True, exist_ok=True)
    stop_when_orphaned()
    child = is_launcher_child()  # DDP's extra processes: the launcher holds the lock and decides
    # a retried SLURM job may start while the cancelled one is still being killed (KillWait)
    with nullcontext() if child else exclusive(out_dir, wait=120 if "SLURM_JOB_ID" in os.environ else 0):
        work = out_dir / ".work"
        if child:
            ckpt_path = launcher_decision(work)
        else:
            ckpt_path = resume_point(work, fingerprint([*scans, val_scan], [data, model, train_cfg], accelerator,
                                                       init, teacher))
            announce(work, ckpt_path)
        trainer = L.Trainer(
            max_epochs=train_cfg.max_epochs, accelerator=accelerator, devices=execution.devices,
            # several tasks: EpochShuffle deals each its share of every global batch; on
            # CUDA the batch norms also take the global batch's statistics (not on CPU)
            num_nodes=execution.nodes, use_distributed_sampler=False,
            sync_batchnorm=execution.devices * execution.nodes > 1 and accelerator == "cuda",
            strategy=runtime.strategy(execution), accumulate_grad_batches=train_cfg.accumulate_grad_batches,
            deterministic=train_cfg.deterministic, logger=runtime.make_logger(train_cfg.logger, work, out_dir.name),
            callbacks=[PreciseBatchNorm(train_set, train_cfg.batch_size * data.gridsize**2),
                       *([DataOnDevice(train_set, val_set)] if not execution.num_workers else []),
                       ModelCheckpoint(dirpath=work, filename="last", save_top_k=1, monitor=None),
                       *runtime.callbacks(train_cfg, work), *callbacks],
            enable_progress_bar=not execution.quiet, enable_model_summary=not execution.quiet,
            default_root_dir=work, num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()],
        )
        with warnings.catch_warnings(), unfilled_memory():
            # the data are in memory: worker processes would only add start-up cost
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # checkpoints/, logs/ and the resume fingerprint live there
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            # an adaptation holds no band out (config.ADAPTATION): no validation, as asked
            warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
        if not trainer.is_global_zero:
            return None
        _mark_best(runtime.best_checkpoint(trainer), work)
        finish(work, out_dir, ("last.ckpt", "best.ckpt", "metrics.csv", "checkpoints", "logs"))
        return out_dir / "best.ckpt"


@contextmanager
def unfilled_memory():
    """Deterministic algorithms (the default) also fill every new tensor with NaN, to
    expose a kernel that reads memory it never wrote; none here does, and the filling
    was ~12 % of a CPU training step (docs/benchmarks.md). The results do not change."""
    previous = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = previous


def start_from(module: PINN, state: dict[str, torch.Tensor]) -> None:
    """Load a network's weights into `module`, keeping the module's own probe (the
    estimate input's, on the scan's input scale): the model reused, the new scan's
    probe."""
    module.net.load_state_dict({**state, **({"probe": module.net.probe} if "probe" in state else {})})


def _mark_best(cb: ModelCheckpoint, work: Path) -> None:
    """best.ckpt: the best top-k checkpoint plus a record of how it was chosen."""
    ckpt = torch.load(cb.best_model_path, map_location="cpu", weights_only=True)
    ckpt["selection"] = {"file": Path(cb.best_model_path).name, "monitor": cb.monitor, "mode": cb.mode,
                         "score": float(cb.best_model_score), "epoch": int(ckpt["epoch"]),
                         "kept": sorted(Path(p).name for p in cb.best_k_models)}
    torch.save(ckpt, work / "best.ckpt")
