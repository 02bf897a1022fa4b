"""Typed configuration, built in one place: defaults (here) < config file < CLI flags.

Each dataclass field carries its command-line flag and help text, so the scripts'
argparse surfaces are generated from these classes and cannot drift from them.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def opt(default, flag: str, help: str, choices=None):
    return field(default=default, metadata={"flag": flag, "help": help, "choices": choices})


@dataclass
class DataConfig:
    gridsize: int = opt(2, "--gridsize", "patterns per training sample along each axis (C = gridsize^2)")
    neighbours: int = opt(6, "--neighbours", "group members are drawn from a seed's K nearest positions")
    n_groups: int = opt(0, "--n_images", "training groups per epoch (0 = one per training pattern)")
    val_fraction: float = opt(0.1, "--val-fraction", "fraction of the scan (a band of rows) held out for validation")


@dataclass
class ModelConfig:
    width: int = opt(32, "--width", "channels of the first encoder level (doubled twice further down)")
    loss: str = opt("poisson", "--loss", "training loss", choices=("poisson", "mae"))
    norm: str = opt("batch", "--norm", "normalisation after each convolution", choices=("batch", "none"))
    input_transform: str = opt("sqrt", "--input-transform", "applied to the scaled amplitudes the network sees",
                               choices=("sqrt", "none"))
    align_phase: bool = opt(True, "--align-phase", "bring group members to one common global phase "
                            "before the overlap constraint")


@dataclass
class TrainConfig:
    max_epochs: int = opt(20, "--max_epochs", "training epochs")
    batch_size: int = opt(16, "--batch_size", "groups per optimiser step")
    learning_rate: float = opt(1e-3, "--learning-rate", "Adam learning rate")
    seed: int = opt(0, "--seed", "seed for grouping, initialisation and shuffling")
    deterministic: bool = opt(True, "--deterministic", "use deterministic algorithms (bit-identical CPU reruns)")


@dataclass
class InferConfig:
    batch_size: int = opt(256, "--inference-batch-size", "patterns per forward pass (bounds memory)")
    stitch: str = opt("fourier", "--stitch", "sub-pixel placement of patches", choices=("fourier", "bilinear"))
    middle_trim: int = opt(0, "--middle-trim", "use only the central N - 2*trim pixels of each patch (0 = all)")
    align_phase: bool = opt(True, "--align-phase", "solve for each patch's global phase from the overlaps "
                            "before stitching")


@dataclass
class ExecConfig:
    accelerator: str = opt("auto", "--accelerator", "device to run on",
                           choices=("auto", "cpu", "gpu", "cuda", "mps"))
    threads: int = opt(2, "--threads", "CPU threads for torch")
    num_workers: int = opt(0, "--num-workers", "data-loader worker processes")
    quiet: bool = opt(False, "--quiet", "no progress bars or summaries")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "infer": InferConfig,
            "execution": ExecConfig}


def _check_type(cls, name, value, source):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    expected = type(f.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{source}: {name} must be {expected.__name__}, got {value!r}")
    if f.metadata.get("choices") and value not in f.metadata["choices"]:
        raise ValueError(f"{source}: {name} must be one of {f.metadata['choices']}, got {value!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, sections) -> None:
    """One flag per field of the given sections, defaults shown from the dataclasses."""
    for sec in sections:
        group = parser.add_argument_group(sec)
        for f in dataclasses.fields(SECTIONS[sec]):
            md = f.metadata
            dest = f"{sec}.{f.name}"
            if isinstance(f.default, bool):
                group.add_argument(md["flag"], dest=dest, action=argparse.BooleanOptionalAction,
                                   default=None, help=f"{md['help']} (default: {f.default})")
            else:
                group.add_argument(md["flag"], dest=dest, type=type(f.default), default=None,
                                   choices=md["choices"], help=f"{md['help']} (default: {f.default})")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file with sections " + ", ".join(sections) + " (flags override it)")


def build(args: argparse.Namespace, sections) -> dict:
    """Configuration objects for the given sections: defaults < --config file < flags."""
    file_cfg = {}
    if getattr(args, "config", None):
        file_cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    out = {}
    for sec in sections:
        cls = SECTIONS[sec]
        values = {}
        for name, value in (file_cfg.get(sec) or {}).items():
            if name not in {f.name for f in dataclasses.fields(cls)}:
                raise ValueError(f"{args.config}: unknown key {sec}.{name}")
            values[name] = _check_type(cls, name, value, str(args.config))
        for f in dataclasses.fields(cls):
            v = getattr(args, f"{sec}.{f.name}", None)
            if v is not None:
                values[f.name] = _check_type(cls, f.name, v, f.metadata["flag"])
        out[sec] = cls(**values)
    return out
