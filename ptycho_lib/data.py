"""Training data: the input scaling, grouping and the split of a scan, and scans of
random objects simulated like a measured one."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from .geometry import apply_ramps, canvas_geometry, canvas_windows, shift_ramps, window_origins
from .neighbours import nearest_neighbours
from .physics import counts_of, far_field, pattern_totals, scale_probe
from .scan import Scan, mark_unmeasured


def input_scale(amplitude: np.ndarray) -> float:
    """Network input scale: makes the mean per-pattern energy sum(X^2) equal (N/2)^2."""
    return float((amplitude.shape[-1] / 2) / np.sqrt(float(np.mean(pattern_totals(amplitude)))))


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


def tile_groups(pos: np.ndarray, gridsize: int) -> np.ndarray:
    """(G, C) indices into `pos` that hold every position, about once (G ~ M / C):
    positions in scan order each start a group, unless already taken, with the C-1
    nearest of its 4C nearest positions not yet taken, then (where fewer are left)
    the nearest taken ones. Validation's groups: every held-out pattern counts,
    for a C-th of the work of one group per pattern."""
    m, c = len(pos), gridsize * gridsize
    if m < c:
        raise ValueError(f"gridsize {gridsize} needs at least {c} positions, have {m}")
    near = nearest_neighbours(pos, 4 * c)
    free = np.ones(m, bool)
    groups = []
    for i in range(m):
        if free[i]:
            free[i] = False
            row = near[i]
            picks = np.concatenate([row[free[row]], row[~free[row]]])[:c - 1]
            free[picks] = False
            groups.append([i, *picks])
    return np.array(groups, np.int64).reshape(-1, c)


def teacher_patches(obj: np.ndarray, y: np.ndarray, x: np.ndarray, n: int) -> torch.Tensor:
    """(M, N, N) complex64: the window of `obj` at each position (y, x on its canvas),
    in the frame of the network's patch for that pattern (the sub-pixel part moved
    back, so stitching the patches rebuilds `obj`): what an adaptation taught by a
    refined reconstruction pulls each patch toward (model.patch_distance)."""
    index, ramps = canvas_windows(y, x, n, obj.shape)
    windows = torch.from_numpy(np.asarray(obj, np.complex64).ravel()[index.numpy()])
    return torch.fft.ifft2(torch.fft.fft2(windows) * ramps.conj())  # the ramp's conjugate moves the other way


class GroupDataset(Dataset):
    """Items: (network inputs (C, K, N, N), counts (C, N, N), offsets (C, 2) from the
    group centre in pixels, `scan_index`: which of the training scans the group is
    from, so the loss uses that scan's probe and dose), and with `targets` (M, N, N)
    (a teacher's patch for every pattern of the scan, teacher_patches) the members'
    targets (C, N, N) last. The inputs of every pattern are made once, by `prepare`
    (the network's `inputs`, given the scaled amplitudes), before training starts."""

    def __init__(self, scan: Scan, indices: np.ndarray, groups: np.ndarray, scale: float, prepare,
                 scan_index: int = 0, chunk: int = 256, targets: torch.Tensor | None = None):
        self.scan_index = scan_index
        amp = torch.from_numpy(np.ascontiguousarray(mark_unmeasured(scan.amplitude[indices], scan.bad_pixels)))
        self.counts = counts_of(amp)
        self.pos = torch.from_numpy(scan.positions[indices])
        self.groups = torch.from_numpy(groups)
        self.targets = None if targets is None else targets[torch.from_numpy(np.asarray(indices))]
        with torch.no_grad():
            self.inputs = torch.cat([prepare(amp[s:s + chunk] * scale) for s in range(0, len(amp), chunk)])

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, i):
        inputs, counts, offsets, _, *targets = self.__getitems__([i])
        return inputs[0], counts[0], offsets[0], self.scan_index, *(t[0] for t in targets)

    def __getitems__(self, indices) -> list[torch.Tensor]:
        """The items `indices` as one batch, each field gathered in one indexing
        operation (item by item, the loader's small copies outlast a GPU's step)."""
        g = self.groups[torch.as_tensor(indices)]
        inputs, counts, offsets, *targets = gathered(self.inputs, self.counts, self.pos, g, self.targets)
        return [inputs, counts, offsets, torch.full((len(g),), self.scan_index), *targets]


def gathered(inputs: torch.Tensor, counts: torch.Tensor, pos: torch.Tensor, g: torch.Tensor,
             targets: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The inputs, counts and offsets from the group centre (pixels) of groups `g`
    (rows of pattern indices), and the targets when there are any, one indexing
    operation per field."""
    p = pos[g]
    return [inputs[g], counts[g], (p - p.mean(1, keepdim=True)).float(), *(() if targets is None else (targets[g],))]


class ScansDataset(ConcatDataset):
    """The groups of several scans' GroupDatasets, trained on together (a group never
    mixes scans). The DataLoader fetches whole batches (__getitems__; collate_fn
    as_batch), in the order of the indices. Moved to a GPU (`to`), the scans' fields are
    joined into one table each, so a batch is four gathers however many scans it
    draws from (scan by scan, a batch of 65 scans took 40 ms of small copies)."""

    joined = None

    def __getitems__(self, indices) -> list[torch.Tensor]:
        if self.joined is not None:
            t = self.joined
            i = torch.as_tensor(indices, device=t["groups"].device)
            inputs, counts, offsets, *targets = gathered(t["inputs"], t["counts"], t["pos"], t["groups"][i],
                                                         t.get("targets"))
            return [inputs, counts, offsets, t["scan"][i], *targets]
        indices = torch.as_tensor(indices)
        if len(self.datasets) == 1:
            return self.datasets[0].__getitems__(indices)
        which = torch.bucketize(indices, torch.tensor(self.cumulative_sizes), right=True)
        batch = None
        for d in which.unique().tolist():
            rows = torch.nonzero(which == d).squeeze(1)
            part = self.datasets[d].__getitems__(indices[rows] - (self.cumulative_sizes[d - 1] if d else 0))
            if batch is None:
                batch = [torch.empty((len(indices), *f.shape[1:]), dtype=f.dtype) for f in part]
            for whole, f in zip(batch, part):
                whole.index_copy_(0, rows, f)
        return batch

    def spread_inputs(self, count: int) -> torch.Tensor:
        """The network inputs of `count` patterns spread evenly through every scan's."""
        sizes = torch.tensor([len(d.inputs) for d in self.datasets])
        picks = torch.linspace(0, int(sizes.sum()) - 1, min(count, int(sizes.sum()))).round().long()
        which = torch.bucketize(picks, sizes.cumsum(0), right=True)
        starts = sizes.cumsum(0) - sizes
        return torch.cat([self.datasets[d].inputs[picks[which == d] - starts[d]] for d in which.unique().tolist()])

    def to(self, device) -> ScansDataset:
        """Joins the scans' fields into one table each in `device`'s memory."""
        sets = self.datasets
        starts = np.cumsum([0] + [len(d.inputs) for d in sets[:-1]])
        self.joined = {name: torch.cat([getattr(d, name).to(device) for d in sets])
                       for name in ("inputs", "counts", "pos", "targets") if getattr(sets[0], name) is not None}
        self.joined["groups"] = torch.cat([d.groups.to(device) + int(k) for d, k in zip(sets, starts)])
        self.joined["scan"] = torch.cat([torch.full((len(d),), d.scan_index, device=device) for d in sets])
        return self

    def nbytes(self) -> int:
        return sum(t.nbytes for d in self.datasets for t in (d.inputs, d.counts, d.pos, d.groups, d.targets)
                   if t is not None)


def as_batch(batch):
    """collate_fn of a dataset whose __getitems__ returns the batch itself."""
    return batch


def random_object(shape, rng) -> np.ndarray:
    """A generic random sample for training data: amplitude and phase are independent
    random fields with power spectra 1/f^beta (beta drawn from 2..4, from rough to
    smooth; natural images lie in this range), phase rms 0.2-0.6 rad, amplitude
    dipping by 5-30 % below 1. Deliberately not the fixture's recipe (no disks, bars or
    stars), so a model trained on such samples is not told what the test objects are."""

    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    f[0, 0] = 1.0

    def field(beta):
        spec = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * f ** (-beta / 2)
        spec[0, 0] = 0.0
        out = np.fft.ifft2(spec).real
        return out / out.std()

    phase = field(rng.uniform(2, 4)) * rng.uniform(0.2, 0.6)
    amp = field(rng.uniform(2, 4))
    amp = 1.0 - rng.uniform(0.05, 0.3) * (amp - amp.min()) / np.ptp(amp)
    return amp * np.exp(1j * phase)


def simulate_like(scan: Scan, seed: int, noise: bool = True, chunk: int = 256):
    """A scan with `scan`'s probe, positions and photons per pattern, of a random object
    (random_object) with Poisson noise (noise=False: the expected counts), through the
    reconstruction's forward model: the window cut at each position's integer part, the
    probe moved by the fractional part (as the iterative solver does); `scan`'s bad
    pixels are zero and marked bad, as they are in the measured scan.
    Training on such scans beside the measured one teaches the network to invert
    patterns of other objects."""
    rng = np.random.default_rng(seed)
    n, m = scan.n, len(scan.x)
    # the positions moved next to the canvas origin (a file's may start anywhere)
    y = scan.y - np.floor(scan.y.min()) + n / 2 + 1
    x = scan.x - np.floor(scan.x.min()) + n / 2 + 1
    obj = random_object(canvas_geometry(x, y, n)[0], rng)
    iy, ix, fy, fx = window_origins(y, x, n)
    frac = torch.from_numpy(np.stack([fy, fx], 1))
    probe = torch.from_numpy(scale_probe(scan.probe.astype(np.complex128), scan.nphotons).astype(np.complex64))
    obj_t = torch.from_numpy(obj.astype(np.complex64))
    r = np.arange(n)
    amplitude = np.empty((m, n, n), np.float32)
    for s in range(0, m, chunk):
        b = slice(s, min(s + chunk, m))
        ramp = shift_ramps(frac[b], n)
        shifted = apply_ramps(probe, ramp)
        windows = obj_t[torch.from_numpy((iy[b, None] + r)[:, :, None]), torch.from_numpy((ix[b, None] + r)[:, None, :])]
        intensity = far_field(shifted * windows).abs().square().double().numpy()
        amplitude[b] = np.sqrt(rng.poisson(intensity) if noise else intensity)
    if scan.bad_pixels is not None:
        amplitude[:, scan.bad_pixels] = 0
    return Scan(amplitude, scan.probe, x, y, scan.nphotons, obj.astype(np.complex64), bad_pixels=scan.bad_pixels)
