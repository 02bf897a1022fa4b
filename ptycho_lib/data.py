"""Training data: the canonical scan, its input scaling, grouping and the split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from .io import InputError, read_npz, release_pages
from .neighbours import nearest_neighbours

CANONICAL_KEYS = ("diffraction", "probeGuess", "xcoords", "ycoords", "nphotons")


@dataclass
class Scan:
    amplitude: np.ndarray  # (M, N, N) float32, sqrt(counts)
    probe: np.ndarray  # (N, N) complex64, as given in the file
    x: np.ndarray  # (M,) float64, object pixels
    y: np.ndarray
    nphotons: float  # mean total counts per pattern
    obj: np.ndarray | None = None  # reference object when present

    @property
    def n(self) -> int:
        return self.amplitude.shape[-1]

    @property
    def positions(self) -> np.ndarray:
        """(M, 2) as (y, x): the (row, column) order of every shift in this library."""
        return np.stack([self.y, self.x], 1)


def load_scan(path, mmap: bool = False) -> Scan:
    """The canonical scan in `path`; with mmap the patterns stay in the file (a
    read-only memory map, when transpose stored them uncompressed as it does) and are
    read as they are used."""
    raw = read_npz(path, mmap_keys=("diffraction",) if mmap else ())
    missing = [k for k in CANONICAL_KEYS if k not in raw]
    if missing:
        raise InputError(path, f"not a canonical file (missing {', '.join(missing)}); run transpose first")
    return scan_from(raw)


def scan_from(canonical: dict) -> Scan:
    """A Scan from the arrays of a canonical file (contract.canonicalise's output)."""
    c = canonical
    return Scan(c["diffraction"], c["probeGuess"], c["xcoords"], c["ycoords"], float(c["nphotons"]),
                c.get("objectGuess"))


def input_scale(amplitude: np.ndarray, chunk: int = 1024) -> float:
    """Network input scale: makes the mean per-pattern energy sum(X^2) equal (N/2)^2.
    Read `chunk` patterns at a time (memory does not grow with the scan)."""
    n = amplitude.shape[-1]
    energies = np.empty(len(amplitude))
    for s in range(0, len(amplitude), chunk):
        part = amplitude[s:s + chunk]
        energies[s:s + chunk] = np.sum(part.astype(np.float64) ** 2, axis=(-2, -1))
        release_pages(part)
    return float((n / 2) / np.sqrt(float(np.mean(energies))))


def split_rows(y: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the band of the scan with the largest y (whole rows of a raster scan), so
    no validation position lies inside the training region; returns (train, val)."""
    order = np.argsort(y, kind="stable")
    n_val = int(round(len(y) * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    return np.sort(order[: len(y) - n_val]), np.sort(order[len(y) - n_val:])


def make_groups(pos: np.ndarray, gridsize: int, neighbours: int, n_groups: int, seed: int) -> np.ndarray:
    """(G, C) indices into `pos`: a seed position plus C-1 of its K nearest neighbours."""
    m = len(pos)
    c = gridsize * gridsize
    rng = np.random.default_rng(seed)
    g = n_groups or m
    seeds = np.concatenate([rng.permutation(m) for _ in range(-(-g // m))])[:g]
    if c == 1:
        return seeds[:, None]
    if m < c:
        raise ValueError(f"gridsize {gridsize} needs at least {c} positions, have {m}")
    k = max(neighbours, c - 1)
    nn = nearest_neighbours(pos, k)
    picks = np.argsort(rng.random((g, nn.shape[1])), axis=1)[:, : c - 1]
    return np.concatenate([seeds[:, None], np.take_along_axis(nn[seeds], picks, 1)], 1)


class GroupDataset(Dataset):
    """Items: (network inputs (C, K, N, N), counts (C, N, N), offsets (C, 2) from the
    group centre in pixels). The inputs of every pattern are made once, by `prepare`
    (the network's `inputs`, given the scaled amplitudes), before training starts."""

    def __init__(self, scan: Scan, indices: np.ndarray, groups: np.ndarray, scale: float, prepare,
                 chunk: int = 256):
        amp = torch.from_numpy(np.ascontiguousarray(scan.amplitude[indices]))
        self.counts = amp.square()
        self.pos = torch.from_numpy(scan.positions[indices])
        self.groups = torch.from_numpy(groups)
        with torch.no_grad():
            self.inputs = torch.cat([prepare(amp[s:s + chunk] * scale) for s in range(0, len(amp), chunk)])

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, i):
        g = self.groups[i]
        pos = self.pos[g]
        return self.inputs[g], self.counts[g], (pos - pos.mean(0)).float()



class ScansDataset(ConcatDataset):
    """The groups of several scans' GroupDatasets, trained on together (a group never
    mixes scans)."""

    @property
    def inputs(self) -> torch.Tensor:
        return torch.cat([d.inputs for d in self.datasets])
