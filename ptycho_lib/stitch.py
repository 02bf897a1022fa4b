"""Placing predicted patches on the object canvas (docs/design.md, "Stitching").

Each patch is weighted (|P|^2, optionally trimmed to its centre), moved by the
sub-pixel part of its position, and accumulated at the integer part with one
vectorised bincount per batch (over the batch's bounding box, so the cost does not
grow with the canvas); the object is the weighted sum over the summed weights.
Before that, each patch's global phase is solved from its overlaps with its
neighbours (the pieces below, computed while streaming by ptycho_lib.reconstruct).
"""

from __future__ import annotations

import numpy as np
import torch

from .geometry import lit, ramp_factors, shift_ramps, window_origins
from .linalg import conjugate_gradient
from .neighbours import nearest_neighbours


def overlap_pairs(pos: np.ndarray, neighbours: int = 6) -> np.ndarray:
    """(P, 2) index pairs j < k of positions among each other's `neighbours` nearest,
    sorted: the graph on which patch phases are aligned."""
    m = len(pos)
    nn = nearest_neighbours(pos, neighbours)
    a, b = np.repeat(np.arange(m), nn.shape[1]), nn.ravel()
    code = np.unique(np.minimum(a, b) * m + np.maximum(a, b))  # one integer per pair, sorted
    return np.stack([code // m, code % m], 1)


# The batched FFT work below runs in torch complex64 (on the CPU about 4x faster per
# transform than numpy's complex128, and what the complex64 patches hold anyway);
# the accumulations on the canvas and the phase solve stay in float64.


def weighted_spectra(patches: np.ndarray, weight: np.ndarray, padded: bool = False) -> np.ndarray:
    """fft2 of each weighted patch (complex64); `padded`: zero-padded to 2N x 2N, what
    the pairwise overlaps are made of. The padding makes the shift of one patch into
    the other's frame a linear one: a circular shift wraps one edge onto the other and
    biases the overlap's phase (by 0.3 rad on a smooth phase object, 32 px probe)."""
    w = torch.from_numpy(np.asarray(weight, np.float32))
    size = (2 * w.shape[-2], 2 * w.shape[-1]) if padded else None
    return torch.fft.fft2(torch.from_numpy(np.ascontiguousarray(patches, np.complex64)) * w, s=size).numpy()


def pair_overlaps(spec_j: np.ndarray, spec_k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """c_jk = sum_r w_j conj(O_j) w_k O_k(r - d) for pairs of weighted spectra (P, N, N)
    with k at offset d (P, 2) = pos_k - pos_j from j: the overlap whose phase is the
    patches' phase difference (Parseval, with k moved into j's frame). The ramp is
    applied as its two factors: a matrix product along columns, a dot along rows."""
    ey, ex = (f.to(torch.complex64) for f in ramp_factors(torch.from_numpy(d), spec_j.shape[-1]))
    t = torch.from_numpy(spec_j).conj() * torch.from_numpy(spec_k)
    return (torch.matmul(t, ex[:, :, None])[..., 0] * ey).sum(-1).numpy().astype(np.complex128)


def _tree_phases(pairs: np.ndarray, a: np.ndarray, delta: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Phases carried from patch to patch along a spanning forest of the pair graph,
    grown breadth-first from one seed per component, each new patch reached through
    its strongest overlap: exact for consistent pair phases whatever the offsets are
    (a least-squares fit of wrapped differences is not, once offsets span the circle).
    Also each patch's component, named by its seed."""
    j, k = pairs.T
    # each pair in both directions, phi[col] = phi[row] + step; rows sorted, strongest first
    rows, cols, step, strength = np.r_[j, k], np.r_[k, j], np.r_[-delta, delta], np.r_[a, a]
    order = np.lexsort((-strength, rows))
    rows, cols, step, strength = rows[order], cols[order], step[order], strength[order]
    starts = np.searchsorted(rows, np.arange(m))
    counts = np.searchsorted(rows, np.arange(m), side="right") - starts
    phi, seen, component = np.zeros(m), np.zeros(m, bool), np.zeros(m, np.int64)
    for seed in range(m):
        if seen[seed]:
            continue
        seen[seed], component[seed] = True, seed
        frontier = np.array([seed])
        while len(frontier):
            cnt = counts[frontier]
            edge = np.repeat(starts[frontier] - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
            edge = edge[~seen[cols[edge]]]
            edge = edge[np.lexsort((-strength[edge], cols[edge]))]  # per new patch, strongest first
            edge = edge[np.r_[True, cols[edge][1:] != cols[edge][:-1]]] if len(edge) else edge
            frontier = cols[edge]
            phi[frontier] = phi[rows[edge]] + step[edge]
            seen[frontier], component[frontier] = True, seed
    return phi, component


def _zero_mean_phase(phi: np.ndarray, component: np.ndarray) -> np.ndarray:
    """phi with each component's free global phase set so that its patches' circular
    mean is zero: the same whichever patch the file lists first."""
    m = len(phi)
    mean = np.bincount(component, np.cos(phi), m) + 1j * np.bincount(component, np.sin(phi), m)
    return phi - np.angle(mean)[component]


def solve_phases(pairs: np.ndarray, c: np.ndarray, m: int) -> np.ndarray:
    """The phase per patch that best explains the pairwise overlaps c_jk. Phases are
    first carried along a spanning tree of the strongest overlaps (right for any
    offsets, even spanning the whole circle), then refined by the weighted
    least-squares fit of what is left over all pairs (small, so wrapping no longer
    matters; a graph Laplacian solved by conjugate gradient). O(pairs) memory."""
    if m < 2 or len(pairs) == 0:
        return np.zeros(m)
    j, k = pairs.T
    a = np.abs(c)
    a = a / max(a.max(), np.finfo(float).tiny)
    tree, component = _tree_phases(pairs, a, np.angle(c), m)
    delta = np.angle(c * np.exp(1j * (tree[k] - tree[j])))  # what the tree leaves unexplained
    # minimise sum a (phi_k - phi_j + delta)^2; a tiny ridge keeps the system regular,
    # the global phase it leaves (set by rounding and the solver's tolerance, ~1e-4 rad)
    # is fixed afterwards
    ridge = 1e-9
    diag = np.bincount(j, a, m) + np.bincount(k, a, m) + ridge
    # the adjacency in compressed rows (each pair in both directions, sorted by row):
    # one gather and one segmented sum per product, ~10x faster than bincounts
    rows, cols = np.r_[j, k], np.r_[k, j]
    by_row = np.argsort(rows, kind="stable")
    cols, weights = cols[by_row], np.r_[a, a][by_row]
    counts = np.bincount(rows, minlength=m)
    starts = np.cumsum(counts) - counts
    has = counts > 0

    def laplacian(phi):
        out = diag * phi
        out[has] -= np.add.reduceat(weights * phi[cols], starts[has])
        return out

    rhs = np.bincount(j, a * delta, m) - np.bincount(k, a * delta, m)
    return _zero_mean_phase(tree + conjugate_gradient(laplacian, rhs, diag), component)


class Stitcher:
    """Accumulates patches on a canvas; `result()` gives the object and the weights.
    Memory: the canvas (24 bytes a pixel) and one batch of patches."""

    def __init__(self, shape, probe: np.ndarray, method: str = "fourier", middle_trim: int = 0):
        if method not in ("fourier", "bilinear"):
            raise ValueError(f"unknown stitch method {method!r}")
        n = probe.shape[0]
        if not 0 <= middle_trim < n // 2:
            raise ValueError(f"middle_trim must be in [0, {n // 2 - 1}], got {middle_trim}")
        w = np.abs(probe) ** 2
        w = w / w.max()
        if middle_trim:
            mask = np.zeros_like(w)
            mask[middle_trim:n - middle_trim, middle_trim:n - middle_trim] = 1
            w = w * mask
        self.shape, self.n, self.method, self.weight = tuple(shape), n, method, w
        self._weight_spectrum = torch.fft.fft2(torch.from_numpy(w.astype(np.complex64)))
        self.num = np.zeros(self.shape, np.complex128)
        self.den = np.zeros(self.shape, np.float64)

    def _scatter(self, iy, ix, values, weights):
        """Add values and weights (B, N, N) with pixel 0 at canvas (iy, ix) (B,): one
        bincount per quantity over the batch's bounding box, no loop over patches;
        pixels outside the canvas are dropped."""
        h, w = self.shape
        n = values.shape[-1]
        y0, x0 = max(int(iy.min()), 0), max(int(ix.min()), 0)
        y1, x1 = min(int(iy.max()) + n, h), min(int(ix.max()) + n, w)
        if y1 <= y0 or x1 <= x0:
            return
        r = np.arange(n)
        rows = iy[:, None, None] + r[None, :, None]
        cols = ix[:, None, None] + r[None, None, :]
        ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        bw = x1 - x0
        idx = ((rows - y0) * bw + (cols - x0))[ok]
        size = (y1 - y0) * bw
        box = (slice(y0, y1), slice(x0, x1))
        v = values[ok]
        self.num[box] += (np.bincount(idx, v.real, size) + 1j * np.bincount(idx, v.imag, size)).reshape(-1, bw)
        self.den[box] += np.bincount(idx, np.broadcast_to(weights, values.shape)[ok], size).reshape(-1, bw)

    def add(self, patches: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        """patches (B, N, N) complex centred on canvas positions y, x (B,)."""
        if len(patches) == 0:
            return
        n = self.n
        iy, ix, fy, fx = window_origins(y, x, n)
        if self.method == "fourier":
            # shift the weighted patch and its weight so that both fall on integer
            # canvas pixels (weighting first keeps the unlit, unconstrained edges out)
            ramp = shift_ramps(torch.from_numpy(np.stack([fy, fx], 1)), n)
            spec = torch.from_numpy(weighted_spectra(patches, self.weight))
            values = torch.fft.ifft2(spec * ramp).numpy()
            self._scatter(iy, ix, values, torch.fft.ifft2(self._weight_spectrum * ramp).real.numpy())
        else:  # bilinear splatting to the four surrounding canvas pixels
            vals = patches * self.weight
            for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                c = (((1 - fy) if dy == 0 else fy) * ((1 - fx) if dx == 0 else fx))[:, None, None]
                self._scatter(iy + dy, ix + dx, vals * c, self.weight * c)

    def result(self):
        """(object (H, W) complex64 with 0 where nothing was lit, weights (H, W) float32)."""
        den, num = self.den, self.num
        ok = lit(den)
        obj = np.where(ok, num / np.where(ok, den, 1), 0)
        return obj.astype(np.complex64), den.astype(np.float32)
