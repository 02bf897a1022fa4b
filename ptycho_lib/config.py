"""Every setting of every stage, declared once: defaults (here) < config files < CLI flags.

Each dataclass field carries its help text, valid range and the programs that use
it. From these declarations come the scripts' argparse flags (`add_arguments`), the
flags the workflow's rules pass (`cli_flags`), the JSON schema Snakemake validates
config/config.yaml against and the key tables of config/README.md and docs/cli.md
(ptycho_lib.config_docs, checked by tests/test_config_docs.py). A flag is the key's
name with dashes; a few keep an older spelling as a deprecated alias. `build` also
resolves the deprecated flags and checks combinations of values; every error names
the flag (or the config file and key) at fault. This module imports nothing heavy:
the workflow imports it to write its rules' command lines.
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import importlib
import logging
import math
import operator
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "stack_first", "stack_last")
MEASUREMENTS = ("auto", "counts", "amplitude", "intensity")
FORMATS = ("npz", "cxi", "ptychodus")


def opt(default, help: str, *, flag=None, aliases=(), choices=None, type=None, min=None, max=None, above=None,
        only=None, pattern=None, multiple_of=None, nargs=None, rule=True, config=True):
    """A setting: its default and help, the CLI flag (default: --name-with-dashes) and
    deprecated `aliases`, valid values (choices; min/max inclusive, above exclusive; a
    regex `pattern`; `multiple_of`), `type` (needed when the default is None), `nargs`
    for a list of values, `only` (the programs that take it; default: every program of
    its section). rule=False: the workflow passes it itself (threads, accelerator),
    not from config; config=False: a command-line switch with no config key."""
    return field(default=default, metadata={
        "flag": flag, "aliases": aliases, "help": help, "choices": choices, "type": type or builtins.type(default),
        "min": min, "max": max, "above": above, "only": only, "pattern": pattern, "multiple_of": multiple_of,
        "nargs": nargs, "rule": rule, "config": config})


@dataclass
class DatasetConfig:
    layout: str = opt("auto", "stack order of the patterns: stack_first (M, N, N) or stack_last (N, N, M); set it "
                      "when M = N makes auto ambiguous", choices=LAYOUTS, only=("validate", "transpose"))
    measurement: str = opt("auto", "what the patterns hold: counts, amplitude (sqrt of counts) or intensity (float "
                           "counts); auto takes integers and whole-number floats as counts, other floats as "
                           "amplitudes (CXI and ptychodus files: counts unless amplitude)", choices=MEASUREMENTS)
    nphotons: float | None = opt(None, "mean photons per pattern, for files holding normalised or rescaled "
                                 "amplitudes: the patterns are scaled to it (the Poisson model needs counts in "
                                 "photons); null = from the data, and patterns all below 1 are refused",
                                 type=float, above=0.0,
                                 only=("transpose",))
    sha256: str = opt("", "expected SHA-256 of the raw file (of the CXI file or diffraction.h5 for those formats); "
                      "empty = not checked", pattern=r"^([0-9a-fA-F]{64})?$", only=("convert", "validate"))
    format: str = opt("auto", "raw format: auto (a folder is a ptychodus scan, a .npz file an NPZ, any other file "
                      "CXI/HDF5), npz, cxi or ptychodus", choices=("auto", *FORMATS), only=("convert",))
    flip_x: bool = opt(False, "negate the x positions read from a CXI or ptychodus file (tools disagree on the sign "
                       "of CXI translations: a mirrored patchwork with a high loss is the symptom)", only=("convert",))
    flip_y: bool = opt(False, "negate the y positions read from a CXI or ptychodus file", only=("convert",))
    transpose_positions: bool = opt(False, "swap the x and y positions (applied before the flips)",
                                    only=("convert",))
    beam_center: list | None = opt(None, "[row, column] of the beam centre on the detector, around which the "
                                   "patterns are cropped; null = the detector's centre pixel", type=float, nargs=2,
                                   only=("convert",))
    pattern_size: int | None = opt(None, "crop the patterns to N x N around the beam centre; null = the probe's "
                                   "size (without a probe: the largest multiple of 16 that fits)", type=int, min=16,
                                   multiple_of=16, only=("convert",))
    adapt_epochs: int = opt(0, "fine-tune the dataset's model on this scan for this many epochs (from the "
                            "model's weights, taught as adapt_teacher says) and reconstruct with the result "
                            "(results/adapt/NAME/); 0 = the model as it is", min=0, only=())
    adapt_teacher: bool = opt(True, "the adaptation learns the reused model's refined reconstruction of this scan "
                              "(results/adapt/NAME/teacher.npz): each pattern's patch is pulled toward its window "
                              "there, which comes closer to the scan's own model in the same epochs than fitting "
                              "the counts (docs/method.md); false = the training loss", only=())
    refine_probe: bool = opt(False, "the file's probe is only approximate (an estimate, a blurred or older one): "
                             "the baseline refines it, the network and its reconstruction use that refined probe "
                             "(results/probed/NAME.npz), and the refinement refines it further", only=())


@dataclass
class DataConfig:
    gridsize: int = opt(2, "patterns per training sample along each axis: groups of gridsize^2 tied by the overlap "
                        "constraint (3 takes about 2.3x the training time; docs/results.md, dose study)", min=1, max=4)
    neighbours: int = opt(6, "group members are drawn from a seed's K nearest positions", min=1, only=("train",))
    n_groups: int = opt(0, "training groups per epoch (0 = one per training pattern)", min=0, aliases=("--n_images",),
                        only=("train",))
    val_fraction: float = opt(0.1, "fraction of the scan, a band of whole rows, held out for validation (no "
                              "position shared with training)", min=0.0, max=0.99)
    simulated_scans: int = opt(0, "also train on this many scans of random objects simulated with the scan's probe, "
                               "positions and dose (validation stays on the measured scan; each adds the scan's "
                               "length to every epoch; docs/results.md)", min=0, only=("train",))


@dataclass
class ModelConfig:
    width: int = opt(16, "channels at N/2 (doubled at N/4 and N/8, where a stem of 4 starts; compute grows with "
                     "its square)", min=4)
    loss: str = opt("poisson", "training loss: Poisson NLL of the counts (per photon) or mean absolute amplitude "
                    "error", choices=("poisson", "mae"))
    norm: str = opt("batch", "normalisation after each convolution (batch trains several times faster here)",
                    choices=("batch", "none"))
    input_transform: str = opt("sqrt", "applied to the scaled amplitudes the network sees (sqrt lifts the dark "
                               "field)", choices=("sqrt", "none"))
    align_phase: bool = opt(True, "bring group members to one common global phase before the overlap constraint "
                            "(a pattern does not determine its patch's global phase)")
    estimate_iterations: int = opt(10, "iterations of the per-pattern object estimate (error reduction with the "
                                   "known probe) the network sees beside the pattern (0 = the pattern alone)", min=0)
    skips: bool = opt(True, "join each decoder level with the encoder's features of the same size (U-Net)")
    stem: int = opt(2, "space-to-depth factor of the network's first step: 4 starts at N/4, without the N/2 level "
                    "(against stem 2 with n2_convs 2: epochs ~1.25x faster on a CPU, amplitude SSIM ~0.02 lower; "
                    "docs/results.md)", choices=(2, 4))
    n2_convs: int = opt(1, "3x3 convolutions of the encoder's N/2 level (stem 2): a second one makes a training "
                        "step ~8 percent longer and bought no quality (docs/benchmarks.md); 2 rebuilds the earlier "
                        "network", choices=(1, 2))


@dataclass
class TrainConfig:
    max_epochs: int = opt(30, "training epochs (early stopping may end sooner)", min=1, aliases=("--max_epochs",))
    batch_size: int = opt(8, "groups per forward pass", min=1, aliases=("--batch_size",))
    accumulate_grad_batches: int = opt(1, "batches whose gradients are summed per optimiser step: 2 x batch 8 takes "
                                       "the steps of batch 16 in half the memory", min=1)
    learning_rate: float = opt(1e-3, "Adam learning rate", above=0.0)
    seed: int = opt(0, "seed for grouping, initialisation and shuffling", min=0)
    deterministic: bool = opt(True, "use deterministic algorithms (bit-identical CPU reruns)")
    checkpoint_save_top_k: int = opt(1, "best checkpoints kept in checkpoints/ (-1 = every epoch; 0 is refused: "
                                     "the best one is exported)", min=-1)
    checkpoint_monitor: str = opt("val_loss", "metric that picks the exported checkpoint (also watched by early "
                                  "stopping and the plateau scheduler); val_loss needs validation data",
                                  choices=("val_loss", "train_loss"))
    checkpoint_mode: str = opt("min", "whether the lowest or highest monitored value is best", choices=("min", "max"))
    early_stop_patience: int = opt(0, "stop after this many epochs without improvement of the monitor (0 = off)",
                                   min=0)
    logger: str = opt("csv", "experiment logger writing under OUTPUT_DIR/logs/ (metrics.csv is written in every "
                      "case; tensorboard and mlflow are optional extras)",
                      choices=("csv", "tensorboard", "mlflow", "none"))
    scheduler: str = opt("cosine", "learning-rate schedule, stepped once per epoch",
                         choices=("none", "step", "plateau", "cosine"))
    scheduler_step_size: int = opt(10, "step: epochs between learning-rate cuts", min=1)
    scheduler_gamma: float = opt(0.5, "step, plateau: factor applied at each cut", above=0.0, max=1.0)
    scheduler_patience: int = opt(3, "plateau: epochs without improvement of the monitor before a cut", min=0)
    scheduler_min_lr: float = opt(0.0, "plateau, cosine: lowest learning rate", min=0.0)
    scheduler_t_max: int = opt(0, "cosine: epochs of the half cosine (0 = max_epochs)", min=0)
    precision: str = opt("auto", "arithmetic of the network while training: bf16 (mixed: bfloat16 convolutions, "
                         "float32 weights and physics), fp32, or auto (bf16 where the hardware computes it natively: "
                         "CUDA with bf16, or a CPU with AVX512-BF16 or AMX)", choices=("auto", "fp32", "bf16"))


@dataclass
class InferConfig:
    n_images: int = opt(0, "reconstruct from the first N patterns of the scan (0 = all)", min=0,
                        aliases=("--n_images",))
    batch_size: int = opt(0, "patterns per forward pass (bounds memory; 0 = the device's own, 256 on CPU, 4096 on "
                          "CUDA)", flag="--inference-batch-size", min=0)
    stitch: str = opt("fourier", "sub-pixel placement of patches", choices=("fourier", "bilinear"))
    middle_trim: int = opt(0, "use only the central N - 2*trim pixels of each patch (0 = all, weighted by the "
                           "probe intensity)", min=0)
    pad_eval: bool = opt(False, "grow the object canvas beyond the scan's objectGuess so edge windows are "
                         "stitched whole (the reconstruction's origin says where the reference frame sits)")
    align_phase: bool = opt(True, "solve for each patch's global phase from the overlaps before stitching")
    slow_modulus: float = opt(1.0, "after stitching, correct the object's slow modulus by the patterns' total "
                              "counts (each the probe-weighted mean of |O|^2 there), smoothed by a Gaussian of this "
                              "many probe radii, before the slow phase (docs/method.md); 0 = off", min=0.0)
    centroid_phase: float = opt(1.0, "after stitching, correct the object's slow phase by the patterns' centres of "
                                "mass (differential phase contrast), smoothed over this many probe radii (rms of "
                                "its intensity) and shrunk by how far two halves of the patterns agree on it; "
                                "0 = off", min=0.0)


@dataclass
class SolverConfig:
    iterations: int = opt(100, "passes over all positions for the baseline (from a flat object)", min=1,
                          only=("baseline",))
    refine_iterations: int = opt(40, "passes when refining the network's reconstruction; with holdout_fraction "
                                 "> 0 the most passes the data-driven choice considers", min=1, only=("refined",))
    holdout_fraction: float = opt(0.1, "refinement: fraction of the patterns (spread over the scan) held out to "
                                  "choose the pull and the passes, by their Poisson NLL (0 = refine_iterations "
                                  "passes with no pull); infer also stitches its object without them, to judge "
                                  "the large-scale fit by", min=0.0, max=0.5, only=("refined", "infer"))
    pulls: tuple = opt((16.0, 4.0, 1.0, 0.25), "refinement: strengths of the pull toward the network's "
                       "reconstruction, tried from strong to weak (holdout_every passes each) before plain passes; "
                       "in probe views: 1 weighs the prior like one full-intensity view of the pixel", type=float,
                       min=0.0, nargs="+", only=("refined",))
    holdout_every: int = opt(3, "refinement: passes between two measurements of the held-out NLL (and per pull)",
                             min=1, only=("refined",))
    holdout_patience: int = opt(3, "refinement: stop the choice after this many measurements that do not lower "
                                "the held-out NLL (by more than holdout_tolerance)", min=1, only=("refined",))
    holdout_tolerance: float = opt(0.01, "refinement: a measurement counts as lower only when it lowers the "
                                   "held-out NLL by more than this fraction", min=0.0, max=0.5, only=("refined",))
    refine_smooth_scale: float = opt(3.0, "refinement: when the chosen state still leans on the network's object "
                                     "(the start itself, or a pass pulled toward it), fit its slow phase (a phase "
                                     "factor smooth over a Gaussian of this many pixels), which the network's "
                                     "patches miss where the overlap is low, judged by the held-out patterns from "
                                     "a state made without them (0 = off)", min=0.0, only=("refined",))
    refine_smooth_passes: int = opt(45, "refinement: the most passes of that fit", min=1, only=("refined",))
    refine_smooth_momentum: float = opt(0.7, "refinement: momentum of that fit's passes (a smooth factor has no "
                                        "fine-detail noise for momentum to amplify; the held-out patterns catch "
                                        "an overshoot)", min=0.0, max=0.99, only=("refined",))
    refine_resolution_scales: tuple = opt((0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0), "refinement: widths (pixels) of "
                                          "the Gaussian blurs of the result the held-out patterns choose among (0 = "
                                          "none; [0] = off): at low dose the finest detail is mostly noise",
                                          type=float, min=0.0, nargs="+", only=("refined",))
    momentum: float = opt(0.0, "baseline: decay per pass of the momentum on the object's smooth change (0 = "
                          "none; 0.9 converges the large-scale phase in far fewer passes at high dose, but fits "
                          "noise sooner at low dose)", min=0.0, max=0.99, only=("baseline",))
    refine_momentum: float = opt(0.5, "the same momentum for the refinement (the held-out patterns stop it "
                                 "before it fits noise)", min=0.0, max=0.99, only=("refined",))
    momentum_scale: float = opt(3.0, "pixels over which the object's change is smoothed before it gathers "
                                "momentum (fine detail gets none)", above=0.0, only=("baseline", "refined"))
    batch_size: int = opt(32, "positions whose updates are summed into one step", min=1, only=("baseline",))
    refine_batch_size: int = opt(64, "the same for the refinement: it starts with the large-scale phase in place, "
                                 "so larger steps averaging more patterns' noise suit it", min=1, only=("refined",))
    engine: str = opt("epie", "iterative engine: epie (the measured modulus imposed, rPIE steps, random batches) or "
                      "lsqml (LSQ-ML: a Poisson-likelihood far-field step, least-squares step lengths, batches spread "
                      "over the scan; more phase, at 14 px steps less amplitude, 1.3-1.9x the time per pass)",
                      choices=("epie", "lsqml"), only=("baseline", "refined"))
    alpha: float = opt(0.1, "rPIE regularisation: 0 = ePIE-like step, 1 = plain gradient step", min=0.0, max=1.0,
                       only=("baseline", "refined"))
    probe_refinement: bool = opt(False, "also refine the probe (in every pass)", only=("baseline", "refined"))
    seed: int = opt(0, "order in which positions are visited", min=0, only=("baseline", "refined"))

    def refining(self) -> SolverConfig:
        """These settings as the refinement runs its passes: with refine_momentum and
        refine_batch_size."""
        return dataclasses.replace(self, momentum=self.refine_momentum, batch_size=self.refine_batch_size)


@dataclass
class RenderConfig:
    dpi: int = opt(120, "resolution of the PNGs (reconstructions and loss curves)", min=30)
    positions: bool = opt(False, "overlay the scan positions on the amplitude", only=("render",))
    phase_limit: float | None = opt(None, "the phase colour scale spans -limit..+limit radians, the same for every "
                                    "image (to compare methods or scans by eye); null = from each image (its "
                                    "99.5th percentile of |phase|, a full cycle when it wraps)", type=float,
                                    above=0.0, max=math.pi, only=("render",))


@dataclass
class ExecConfig:
    accelerator: str = opt("auto", "device to run on (auto: CUDA, else MPS, else CPU; the log says which); "
                           "gpu/cuda request gpu = devices from the scheduler", choices=("auto", "cpu", "gpu", "cuda",
                                                                                          "mps"),
                           only=("train", "infer"), rule=False)
    devices: int = opt(1, "devices (or CPU processes) to train on, on each node; more than 1 trains with DDP",
                       min=1, only=("train",))
    nodes: int = opt(1, "nodes one training spans (under the SLURM profile: srun starts one task per device on "
                     "each; more than 1 needs devices >= 2)", min=1, only=("train",))
    threads: int = opt(2, "CPU cores of the job, loader workers included; torch uses threads - num_workers (capped "
                       "by Snakemake's --cores)", min=1, rule=False)
    num_workers: int = opt(0, "data-loader worker processes (the data are in memory: 0 is fastest on CPU)", min=0,
                           only=("train", "infer"))
    prefetch_factor: int = opt(0, "batches each worker loads ahead (0 = DataLoader default, 2); needs "
                               "num_workers > 0", min=0, only=("train",))
    persistent_workers: bool | None = opt(None, "keep workers alive between epochs (default: on when "
                                          "num_workers > 0)", type=bool, only=("train",))
    quiet: bool = opt(False, "no progress bars or summaries", only=("train", "infer"), rule=False, config=False)


# What an adaptation (the adapt stage) sets beside its epochs: the new scan alone, every
# pattern of it (a band held out would stay unlearnt, and the last epochs of the short
# cosine are the best), checkpoints ranked by the training loss.
ADAPTATION = {"data": {"simulated_scans": 0, "val_fraction": 0.0}, "train": {"checkpoint_monitor": "train_loss"}}

SECTIONS = {"dataset": DatasetConfig, "data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "infer": InferConfig, "solver": SolverConfig, "render": RenderConfig, "execution": ExecConfig}
# the sections each program (script) reads its settings from
PROGRAMS = {"convert": ("dataset",), "validate": ("dataset", "data"), "transpose": ("dataset",),
            "train": ("data", "model", "train", "execution"), "infer": ("infer", "solver", "execution"),
            "baseline": ("solver", "execution"), "refined": ("solver", "execution"),
            "render": ("render",), "loss_curve": ("render",)}
# optional experiment loggers: the module they need and how to install it
LOGGER_EXTRAS = {"tensorboard": ("tensorboard", "pip install 'ptycho_lib[tensorboard]' (or: pip install tensorboard)"),
                 "mlflow": ("mlflow", "pip install 'ptycho_lib[mlflow]' (or: pip install mlflow-skinny)")}
DEVICE_TO_ACCELERATOR = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "mps": "mps", "auto": "auto"}


def flag(f: dataclasses.Field) -> str:
    """The command-line flag of a setting."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def fields(section: str, program: str | None = None) -> list[dataclasses.Field]:
    """The settings of a section (those `program` takes, else all)."""
    return [f for f in dataclasses.fields(SECTIONS[section])
            if program is None or f.metadata["only"] is None or program in f.metadata["only"]]


def _check(f, value, source):
    md = f.metadata
    if value is None and f.default is None:
        return None
    if md["nargs"]:
        any_length = md["nargs"] == "+"
        if not isinstance(value, (list, tuple)) or not value or (not any_length and len(value) != md["nargs"]):
            count = "one or more" if any_length else md["nargs"]
            raise ValueError(f"{source} must be a list of {count} numbers, got {value!r}")
        return [_check_one(f, v, source) for v in value]
    return _check_one(f, value, source)


def _check_one(f, value, source):
    md = f.metadata
    expected = md["type"]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{source} must be {expected.__name__}, got {value!r}")
    if md["choices"] and value not in md["choices"]:
        raise ValueError(f"{source} must be one of {', '.join(md['choices'])}; got {value!r}")
    for key, op, ok in (("min", ">=", operator.ge), ("above", ">", operator.gt), ("max", "<=", operator.le)):
        if md[key] is not None and not ok(value, md[key]):
            raise ValueError(f"{source} must be {op} {md[key]}, got {value!r}")
    if md["multiple_of"] and value % md["multiple_of"]:
        raise ValueError(f"{source} must be a multiple of {md['multiple_of']}, got {value!r}")
    if md["pattern"] and not re.fullmatch(md["pattern"], value):
        raise ValueError(f"{source} has the wrong form, got {value!r}")
    return value


class _Spelled(argparse._StoreAction):
    """A flag stored under one name whatever its spelling; an old spelling is noted for
    build() to warn about once."""

    def __init__(self, option_strings, dest, old=(), **kw):
        self.old = old
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        if option_string in self.old:
            new = self.option_strings[0]
            namespace._old_spellings = [*getattr(namespace, "_old_spellings", []), (option_string, new)]


def add_flag(parser, new: str, *old: str, **kw) -> None:
    """`new` as an argparse option, with `old` spellings accepted as deprecated aliases
    (one warning each when used)."""
    parser.add_argument(new, *old, action=_Spelled, old=old, **kw)


def add_arguments(parser: argparse.ArgumentParser, program: str) -> None:
    """One flag per setting `program` takes, defaults shown from the declarations,
    plus --config and the deprecated flags."""
    sections = PROGRAMS[program]
    for sec in sections:
        group = parser.add_argument_group(sec)
        for f in fields(sec, program):
            md, dest = f.metadata, f"{sec}.{f.name}"
            shown = f.default if f.default is not None else "none"
            help = md["help"] + ("" if "default:" in md["help"] else f" (default: {shown})")
            if md["type"] is bool:
                group.add_argument(flag(f), dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help)
            else:
                add_flag(group, flag(f), *md["aliases"], dest=dest, type=md["type"], default=None,
                         choices=md["choices"], nargs=md["nargs"], help=help,
                         metavar=None if md["choices"] else md["type"].__name__.upper())
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="YAML file with sections " + ", ".join(sections) + " (config/config.yaml fits); "
                        "repeat to merge several, later ones win; flags override them all")
    old = parser.add_argument_group("deprecated")
    if "execution" in sections and any(f.name == "accelerator" for f in fields("execution", program)):
        old.add_argument("--device", choices=tuple(DEVICE_TO_ACCELERATOR), default=None,
                         help="use --accelerator; taken as the accelerator only when --accelerator is not given")
    if program == "train":
        old.add_argument("--disable_mlflow", action="store_true",
                         help="use --logger none --quiet; turns logging and the progress bar off")


def cli_flags(section: str, values: dict, program: str) -> str:
    """The command-line flags (shell-quoted) that hand `values` (a config section) to
    `program`: what the workflow's rules pass. Settings the rule passes itself and
    null values are left out; booleans become --name / --no-name."""
    out = []
    for f in fields(section, program):
        if not f.metadata["rule"] or values.get(f.name) is None:
            continue
        value = values[f.name]
        if isinstance(value, bool):
            out.append(flag(f) if value else "--no-" + flag(f)[2:])
        else:
            out.append(" ".join([flag(f), *map(shlex.quote, map(str, value if isinstance(value, list) else [value]))]))
    return " ".join(out)


def is_launcher_child() -> bool:
    """True in the extra processes a distributed launcher starts (rank > 0): they rerun
    the same command line and must not repeat its warnings or file handling."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key]) != 0
    return False


def typed_overrides(config: dict) -> dict:
    """`config` (the workflow's) with text turned into the declared type of its setting
    where the text reads as one: `snakemake --config train='{max_epochs: 40}'` hands
    nested values over as strings ('40', 'true', ['4', '1']). Undeclared keys and text
    that does not read as the declared type pass unchanged, for the schema to refuse."""

    def typed(f, value):
        md = f.metadata
        if md["nargs"] and isinstance(value, list):
            return [typed_one(md["type"], v) for v in value]
        if value in ("null", "None", "~") and f.default is None:
            return None
        return typed_one(md["type"], value)

    def typed_one(kind, value):
        if not isinstance(value, str) or kind is str:
            return value
        if kind is bool:
            return {"true": True, "false": False}.get(value.lower(), value)
        try:
            return kind(value) if kind in (int, float) else value
        except ValueError:
            return value

    def section(name, values):
        if not isinstance(values, dict):
            return values
        declared = {f.name: f for f in fields(name)}
        return {k: typed(declared[k], v) if k in declared else v for k, v in values.items()}

    out = {k: section(k, v) if k in SECTIONS and k != "dataset" else v for k, v in config.items()}
    if "dataset_defaults" in out:
        out["dataset_defaults"] = section("dataset", out["dataset_defaults"])
    if isinstance(out.get("datasets"), dict):
        out["datasets"] = {k: section("dataset", v) for k, v in out["datasets"].items()}
    if isinstance(out.get("models"), dict):
        out["models"] = {k: section("data", v) for k, v in out["models"].items()}
    return out


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


def build(args: argparse.Namespace, program: str) -> dict:
    """Configuration objects for the sections of `program`: defaults < --config files <
    flags, then the deprecated flags, then the checks of combinations."""
    files = _read_files(getattr(args, "config", None) or [])
    out, given = {}, set()
    for sec in PROGRAMS[program]:
        taken = {f.name: f for f in fields(sec, program)}
        values = {}
        known = {f.name for f in fields(sec) if f.metadata["config"]}
        for name, (path, value) in files.get(sec, {}).items():
            if name not in known:
                raise ValueError(f"--config {path}: unknown key {sec}.{name}")
            if name in taken:  # (keys of the other programs' settings are left alone)
                values[name] = _check(taken[name], value, f"--config {path}: {sec}.{name}")
        for f in taken.values():
            v = getattr(args, f"{sec}.{f.name}", None)
            if v is not None:
                values[f.name] = _check(f, v, flag(f))
                given.add(flag(f))
        out[sec] = SECTIONS[sec](**values)
    for old, new in dict.fromkeys(getattr(args, "_old_spellings", [])):
        _warn(f"{old} is now spelled {new}; use that")
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
        if ex.nodes > 1 and ex.devices < 2:
            raise ValueError(f"--nodes {ex.nodes} needs --devices 2 or more per node (SLURM's executor starts a "
                             "training of several tasks with at least two per node)")
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
