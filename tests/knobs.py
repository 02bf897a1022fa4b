"""Helpers of the CLI-knob tests: a tiny canonical scan and in-process runs of the
train / export / infer programs (the same main() the command line calls)."""

import csv
from pathlib import Path

import torch

from conftest import TINY
from ptycho_lib.contract import canonicalise
from ptycho_lib.io import write_npz
from ptycho_lib.simulate import simulate

# well under a second per run: 16 groups of 4 tiny patterns, a narrow network, one thread
# (two threads on a busy 2-core machine are ~20x slower: OpenMP threads wait for each other)
FAST = ["--n-groups", "16", "--batch-size", "8", "--width", "8", "--max-epochs", "2", "--quiet", "--threads", "1",
        "--logger", "none", "--accelerator", "cpu"]


def fast_without(*names) -> list[str]:
    """FAST less the named flags and their values."""
    out, skip = [], False
    for i, a in enumerate(FAST):
        if skip:
            skip = False
            continue
        if a in names:
            skip = i + 1 < len(FAST) and not FAST[i + 1].startswith("--")
            continue
        out.append(a)
    return out


def canonical_tiny(path: Path) -> Path:
    write_npz(path, canonicalise(simulate(TINY), path))
    return path


def train(data: Path, out: Path, *flags) -> Path:
    import train as train_script
    train_script.main(["--train-data-file", str(data), "--output-dir", str(out), *FAST, *flags])
    return out


def export(ckpt: Path, bundle: Path) -> Path:
    import export as export_script
    export_script.main([str(ckpt), str(bundle)])
    return bundle


def metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def distance(a: dict, b: dict) -> float:
    return float(sum((a[k].double() - b[k].double()).square().sum() for k in a if a[k].is_floating_point()) ** 0.5)
