"""Helpers shared by the test modules: direct (non-streaming) versions of what the
library computes piecewise, and running Snakemake in a temporary copy of the repo."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from conftest import REPO
from ptycho_lib.geometry import apply_ramps, shift_ramps
from ptycho_lib.stitch import overlap_pairs, pair_overlaps, solve_phases, weighted_spectra

TINY_CONFIG = {  # a few seconds of training: enough to exercise every stage
    "data": {"n_groups": 24},
    "train": {"max_epochs": 2, "batch_size": 8},
    "infer": {"batch_size": 16},
    "solver": {"iterations": 40, "refine_iterations": 10, "batch_size": 8},
}


def phase_offsets(patches: np.ndarray, y: np.ndarray, x: np.ndarray, weight: np.ndarray,
                  neighbours: int = 6) -> np.ndarray:
    """Global phase per patch that makes overlapping patches agree, for patches held in
    memory: what reconstruct() computes from the same pieces while streaming."""
    m = len(patches)
    if m < 2:
        return np.zeros(m)
    pos = np.stack([y, x], 1)
    pairs = overlap_pairs(pos, neighbours)
    spec = weighted_spectra(patches, weight, padded=True)
    j, k = pairs.T
    return solve_phases(pairs, pair_overlaps(spec[j], spec[k], pos[k] - pos[j]), m)


def fourier_shift(patches: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """out(r) = patch(r - d), circular at the edges."""
    d = torch.from_numpy(np.stack([dy, dx], 1))
    return apply_ramps(torch.from_numpy(patches), shift_ramps(d, patches.shape[-1], torch.complex128)).numpy()


def copy_repo(dst: Path) -> Path:
    """The files git would check out (tracked + untracked-not-ignored), nothing else."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def snakemake(workdir: Path, *args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's 'Job stats' table."""
    table = output.split("Job stats:")[1]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m[0] != "total"}
