"""Typed configuration, built in one place: defaults (here) < config files < CLI flags.

Each dataclass field carries its command-line flag, help text and valid range, so the
scripts' argparse surfaces are generated from these classes and cannot drift from them.
`build` also resolves the deprecated flags and checks combinations of values; every
error names the flag (or the config file and key) at fault.
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import importlib
import logging
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


def opt(default, flag: str, help: str, choices=None, *, type=None, min=None, max=None, above=None, only=None):
    """A field with its CLI flag and valid range (min/max inclusive, above exclusive).
    `type` is needed when the default is None; `only` names the one program ('train'
    or 'infer') that shows the flag."""
    return field(default=default, metadata={"flag": flag, "help": help, "choices": choices,
                                            "type": type or builtins.type(default),
                                            "min": min, "max": max, "above": above, "only": only})


@dataclass
class DataConfig:
    gridsize: int = opt(2, "--gridsize", "patterns per training sample along each axis (C = gridsize^2)", min=1)
    neighbours: int = opt(6, "--neighbours", "group members are drawn from a seed's K nearest positions", min=1)
    n_groups: int = opt(0, "--n_images", "training groups per epoch (0 = one per training pattern)", min=0)
    val_fraction: float = opt(0.1, "--val-fraction", "fraction of the scan (a band of rows) held out for validation",
                              min=0.0, max=0.99)
    simulated_scans: int = opt(0, "--simulated-scans", "also train on this many scans of random objects simulated "
                               "with the scan's probe, positions and dose (a model for other samples)", min=0)


@dataclass
class ModelConfig:
    width: int = opt(16, "--width", "channels of the first encoder level (doubled twice further down)", min=4)
    loss: str = opt("poisson", "--loss", "training loss", choices=("poisson", "mae"))
    norm: str = opt("batch", "--norm", "normalisation after each convolution", choices=("batch", "none"))
    input_transform: str = opt("sqrt", "--input-transform", "applied to the scaled amplitudes the network sees",
                               choices=("sqrt", "none"))
    align_phase: bool = opt(True, "--align-phase", "bring group members to one common global phase "
                            "before the overlap constraint")
    estimate_iterations: int = opt(10, "--estimate-iterations", "iterations of the per-pattern object estimate "
                                   "the network sees beside the pattern (0 = the pattern alone)", min=0)
    skips: bool = opt(True, "--skips", "join each decoder level with the encoder's features of the same size "
                      "(U-Net)")


@dataclass
class TrainConfig:
    max_epochs: int = opt(30, "--max_epochs", "training epochs", min=1)
    batch_size: int = opt(8, "--batch_size", "groups per forward pass", min=1)
    accumulate_grad_batches: int = opt(1, "--accumulate-grad-batches",
                                       "batches whose gradients are summed per optimiser step", min=1)
    learning_rate: float = opt(1e-3, "--learning-rate", "Adam learning rate", above=0.0)
    seed: int = opt(0, "--seed", "seed for grouping, initialisation and shuffling", min=0)
    deterministic: bool = opt(True, "--deterministic", "use deterministic algorithms (bit-identical CPU reruns)")
    checkpoint_save_top_k: int = opt(1, "--checkpoint-save-top-k",
                                     "best checkpoints kept in checkpoints/ (-1 = every epoch)", min=-1)
    checkpoint_monitor: str = opt("val_loss", "--checkpoint-monitor", "metric that picks the best checkpoint "
                                  "(also watched by early stopping and the plateau scheduler)",
                                  choices=("val_loss", "train_loss"))
    checkpoint_mode: str = opt("min", "--checkpoint-mode", "whether the lowest or highest monitored value is best",
                               choices=("min", "max"))
    early_stop_patience: int = opt(0, "--early-stop-patience",
                                   "stop after this many epochs without improvement of the monitor (0 = off)", min=0)
    logger: str = opt("csv", "--logger", "experiment logger writing under OUTPUT_DIR/logs/ "
                      "(metrics.csv is written in every case)", choices=("csv", "tensorboard", "mlflow", "none"))
    scheduler: str = opt("cosine", "--scheduler", "learning-rate schedule, stepped once per epoch",
                         choices=("none", "step", "plateau", "cosine"))
    scheduler_step_size: int = opt(10, "--scheduler-step-size", "step: epochs between learning-rate cuts", min=1)
    scheduler_gamma: float = opt(0.5, "--scheduler-gamma", "step, plateau: factor applied at each cut",
                                 above=0.0, max=1.0)
    scheduler_patience: int = opt(3, "--scheduler-patience",
                                  "plateau: epochs without improvement of the monitor before a cut", min=0)
    scheduler_min_lr: float = opt(0.0, "--scheduler-min-lr", "plateau, cosine: lowest learning rate", min=0.0)
    scheduler_t_max: int = opt(0, "--scheduler-t-max", "cosine: epochs of the half cosine (0 = --max_epochs)", min=0)
    precision: str = opt("auto", "--precision", "arithmetic of the network while training: bf16 (mixed: bfloat16 "
                         "convolutions, float32 weights and physics), fp32, or auto (bf16 where the hardware computes "
                         "it natively: CUDA with bf16, or a CPU with AVX512-BF16 or AMX)", choices=("auto", "fp32", "bf16"))


@dataclass
class InferConfig:
    n_images: int = opt(0, "--n_images", "reconstruct from the first N patterns of the scan (0 = all)", min=0)
    batch_size: int = opt(0, "--inference-batch-size", "patterns per forward pass (bounds memory; 0 = the "
                          "device's own, 256 on CPU, 4096 on CUDA)", min=0)
    stitch: str = opt("fourier", "--stitch", "sub-pixel placement of patches", choices=("fourier", "bilinear"))
    middle_trim: int = opt(0, "--middle-trim", "use only the central N - 2*trim pixels of each patch (0 = all)",
                           min=0)
    pad_eval: bool = opt(False, "--pad-eval", "grow the object canvas beyond the scan's objectGuess so edge "
                         "windows are stitched whole")
    align_phase: bool = opt(True, "--align-phase", "solve for each patch's global phase from the overlaps "
                            "before stitching")


@dataclass
class ExecConfig:
    accelerator: str = opt("auto", "--accelerator", "device to run on (auto: CUDA, else MPS, else CPU)",
                           choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: int = opt(1, "--devices", "devices (or CPU processes) to train on; more than 1 trains with DDP",
                       min=1, only="train")
    threads: int = opt(2, "--threads", "CPU cores of the job; torch uses those the data-loader workers leave",
                       min=1)
    num_workers: int = opt(0, "--num-workers", "data-loader worker processes", min=0)
    prefetch_factor: int = opt(0, "--prefetch-factor", "batches each worker loads ahead (0 = DataLoader "
                               "default, 2); needs --num-workers > 0", min=0, only="train")
    persistent_workers: bool | None = opt(None, "--persistent-workers", "keep workers alive between epochs "
                                          "(default: on when --num-workers > 0)", type=bool, only="train")
    quiet: bool = opt(False, "--quiet", "no progress bars or summaries")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "infer": InferConfig,
            "execution": ExecConfig}
# optional experiment loggers: the module they need and how to install it
LOGGER_EXTRAS = {"tensorboard": ("tensorboard", "pip install 'ptycho_lib[tensorboard]' (or: pip install tensorboard)"),
                 "mlflow": ("mlflow", "pip install 'ptycho_lib[mlflow]' (or: pip install mlflow-skinny)")}
DEVICE_TO_ACCELERATOR = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "mps": "mps", "auto": "auto"}


def _fields(sec, program=None):
    return [f for f in dataclasses.fields(SECTIONS[sec]) if program is None or f.metadata["only"] in (None, program)]


def _check(f, value, source):
    md = f.metadata
    expected = md["type"]
    if value is None and f.default is None:
        return None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{source} must be {expected.__name__}, got {value!r}")
    if md["choices"] and value not in md["choices"]:
        raise ValueError(f"{source} must be one of {', '.join(md['choices'])}; got {value!r}")
    for key, op, ok in (("min", ">=", operator.ge), ("above", ">", operator.gt), ("max", "<=", operator.le)):
        if md[key] is not None and not ok(value, md[key]):
            raise ValueError(f"{source} must be {op} {md[key]}, got {value!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, sections, program: str | None = None) -> None:
    """One flag per field of the given sections (those of `program`, else all), defaults shown
    from the dataclasses, plus --config and the deprecated flags."""
    for sec in sections:
        group = parser.add_argument_group(sec)
        for f in _fields(sec, program):
            md, dest = f.metadata, f"{sec}.{f.name}"
            default = "" if "default:" in md["help"] else f" (default: {f.default})"
            if md["type"] is bool:
                group.add_argument(md["flag"], dest=dest, action=argparse.BooleanOptionalAction,
                                   default=None, help=md["help"] + default)
            else:
                group.add_argument(md["flag"], dest=dest, type=md["type"], default=None, choices=md["choices"],
                                   metavar=None if md["choices"] else md["type"].__name__.upper(),
                                   help=md["help"] + default)
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="YAML file with sections " + ", ".join(sections) + " (config/config.yaml fits); "
                        "repeat to merge several, later ones win; flags override them all")
    old = parser.add_argument_group("deprecated")
    if "execution" in sections:
        old.add_argument("--device", choices=tuple(DEVICE_TO_ACCELERATOR), default=None,
                         help="use --accelerator; taken as the accelerator only when --accelerator is not given")
    if "train" in sections:
        old.add_argument("--disable_mlflow", action="store_true",
                         help="use --logger none --quiet; turns logging and the progress bar off")


def is_launcher_child() -> bool:
    """True in the extra processes a distributed launcher starts (rank > 0): they rerun
    the same command line and must not repeat its warnings or file handling."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key]) != 0
    return False


def _read_files(paths) -> dict:
    merged: dict = {}
    for path in paths:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"--config {path}: cannot read it ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ValueError(f"--config {path}: expected a mapping of sections")
        for sec, values in data.items():
            if isinstance(values, dict) and sec in SECTIONS:
                merged.setdefault(sec, {}).update({k: (path, v) for k, v in values.items()})
    return merged


def build(args: argparse.Namespace, sections, program: str | None = None) -> dict:
    """Configuration objects for the given sections: defaults < --config files < flags,
    then the deprecated flags, then the checks of combinations."""
    files = _read_files(getattr(args, "config", None) or [])
    out, given = {}, set()
    for sec in sections:
        fields = {f.name: f for f in _fields(sec, program)}
        values = {}
        known = {f.name for f in _fields(sec)}
        for name, (path, value) in files.get(sec, {}).items():
            if name not in known:
                raise ValueError(f"--config {path}: unknown key {sec}.{name}")
            if name in fields:  # (keys of the other program's knobs are left alone)
                values[name] = _check(fields[name], value, f"--config {path}: {sec}.{name}")
        for f in fields.values():
            v = getattr(args, f"{sec}.{f.name}", None)
            if v is not None:
                values[f.name] = _check(f, v, f.metadata["flag"])
                given.add(f.metadata["flag"])
        out[sec] = SECTIONS[sec](**values)
    _deprecated(args, out, given)
    validate(out)
    return out


def _warn(message: str) -> None:
    if not is_launcher_child():
        log.warning("deprecated: %s", message)


def _deprecated(args, cfg: dict, given: set) -> None:
    device = getattr(args, "device", None)
    if device is not None:
        wanted = DEVICE_TO_ACCELERATOR[device]
        if "--accelerator" in given:
            if DEVICE_TO_ACCELERATOR[cfg["execution"].accelerator] != wanted:
                raise ValueError(f"--device {device} contradicts --accelerator {cfg['execution'].accelerator}; "
                                 "drop the deprecated --device")
            _warn(f"--device {device} is ignored in favour of --accelerator; drop it")
        else:
            _warn(f"--device {device} is taken as --accelerator {wanted}; use --accelerator")
            cfg["execution"].accelerator = wanted
    if getattr(args, "disable_mlflow", False):
        if cfg["train"].logger == "mlflow" and "--logger" in given:
            raise ValueError("--disable_mlflow contradicts --logger mlflow; drop the deprecated --disable_mlflow")
        if "--no-quiet" in given or ("--quiet" in given and not cfg["execution"].quiet):
            raise ValueError("--disable_mlflow turns the progress bar off, which contradicts --no-quiet")
        _warn("--disable_mlflow is taken as --logger none --quiet; use those")
        if "--logger" not in given:
            cfg["train"].logger = "none"
        cfg["execution"].quiet = True


def validate(cfg: dict) -> None:
    """Checks that involve more than one value; each message names the flags."""
    ex = cfg.get("execution")
    if ex is not None:
        if ex.prefetch_factor and ex.num_workers == 0:
            raise ValueError(f"--prefetch-factor {ex.prefetch_factor} needs --num-workers > 0 "
                             "(without workers nothing is loaded ahead)")
        if ex.persistent_workers and ex.num_workers == 0:
            raise ValueError("--persistent-workers needs --num-workers > 0 (there are no workers to keep)")
        if ex.devices > 1 and ex.accelerator == "mps":
            raise ValueError(f"--devices {ex.devices} is not possible with --accelerator mps (one device)")
    tr = cfg.get("train")
    if tr is not None:
        if tr.checkpoint_save_top_k == 0:
            raise ValueError("--checkpoint-save-top-k 0 would keep no best checkpoint to export; "
                             "use -1 (all) or >= 1")
        if tr.logger in LOGGER_EXTRAS:
            module, install = LOGGER_EXTRAS[tr.logger]
            try:
                importlib.import_module(module)
            except ImportError:
                raise ValueError(f"--logger {tr.logger} needs the optional package '{module}': {install}") from None
        if tr.scheduler == "cosine" and tr.scheduler_min_lr >= tr.learning_rate:
            raise ValueError(f"--scheduler-min-lr {tr.scheduler_min_lr} must be below --learning-rate "
                             f"{tr.learning_rate}")
