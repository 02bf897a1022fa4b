"""Iterative phase retrieval: a compact batched ePIE/rPIE in PyTorch.

The same forward model as the network's physics (exit wave P * O, far field
|FFT_ortho|^2 with the zero frequency at the centre, probe on the photon scale).
Sub-pixel positions are handled by shifting the band-limited probe with a Fourier phase
ramp and cutting the object at the integer part, so the object itself is never
interpolated. Positions are visited in random mini-batches; the updates of a batch are
summed and normalised by the batch's summed probe intensity (the rPIE regularised
step), which keeps a batch of overlapping updates stable.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import SolverConfig
from .geometry import apply_ramps, shift_ramps, window_origins
from .physics import far_field, poisson_nll, predicted_counts


class Solver:
    """Reconstructs an object (and optionally refines the probe) from measured
    amplitudes at known positions, starting from a given object estimate."""

    def __init__(self, amplitude: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray,
                 init_object: np.ndarray, cfg: SolverConfig):
        self.cfg = cfg
        self.n = probe.shape[0]
        self.meas = torch.from_numpy(np.ascontiguousarray(amplitude, np.float32))
        self.probe = torch.from_numpy(probe.astype(np.complex64))
        self.obj = torch.from_numpy(init_object.astype(np.complex64)).clone()
        self.flat_index, self.ramp = _windows(y, x, self.n, self.obj.shape)
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[float] = []
        self.passes = 0

    def _index(self, b):
        return self.flat_index[b].reshape(-1)

    def step(self, refine_probe: bool) -> float:
        """One pass over all positions in random batches; returns the mean Fourier
        amplitude error (a data-fit figure, not the object error)."""
        m = len(self.meas)
        order = torch.from_numpy(self.rng.permutation(m))
        err = 0.0
        flat = self.obj.view(-1)
        for s in range(0, m, self.cfg.batch_size):
            b = order[s:s + self.cfg.batch_size]
            idx = self._index(b)
            patch = flat[idx].reshape(len(b), self.n, self.n)
            probe = apply_ramps(self.probe.expand(len(b), -1, -1), self.ramp[b])
            psi = probe * patch
            far = far_field(psi)
            amp = far.abs()
            err += float((amp - self.meas[b]).abs().sum())
            # replace the modulus by the measured one, keep the phase
            fixed = far * (self.meas[b] / amp.clamp_min(1e-6))
            dpsi = torch.fft.ifft2(torch.fft.ifftshift(fixed, dim=(-2, -1)), norm="ortho") - psi
            # rPIE object update, summed over the batch on the object canvas
            pw = probe.abs().square()
            num = torch.zeros_like(flat).index_add_(0, idx, (probe.conj() * dpsi).reshape(-1))
            den = torch.zeros(flat.shape, dtype=torch.float32).index_add_(0, idx, pw.reshape(-1))
            a = self.cfg.alpha
            flat += num / ((1 - a) * den + a * den.max()).clamp_min(1e-12)
            if refine_probe:
                ow = patch.abs().square()
                # gradient for the unshifted probe: shift each term back
                back = apply_ramps(patch.conj() * dpsi, self.ramp[b].conj()).sum(0)
                odiv = (1 - a) * ow.sum(0) + a * ow.sum(0).max()
                self.probe += back / odiv.clamp_min(1e-12)
        self.history.append(err / float(self.meas.sum()))
        return self.history[-1]

    def coverage(self) -> np.ndarray:
        """Summed probe intensity on the canvas (the stitching weight's counterpart)."""
        probe = apply_ramps(self.probe.expand(len(self.meas), -1, -1), self.ramp).abs().square()
        den = torch.zeros(self.obj.numel()).index_add_(0, self._index(torch.arange(len(self.meas))),
                                                       probe.reshape(-1))
        return den.reshape(self.obj.shape).numpy()

    def run(self, iterations: int | None = None, callback=None) -> np.ndarray:
        """`iterations` further passes (default: the configured number); the probe is
        refined from the sixth pass on when asked. Returns the object (a view: later
        passes change it)."""
        for it in range(self.cfg.iterations if iterations is None else iterations):
            self.step(self.cfg.probe_refinement and self.passes >= 5)
            self.passes += 1
            if callback:
                callback(it, self)
        return self.obj.numpy()

    def nll(self, amplitude: np.ndarray, y: np.ndarray, x: np.ndarray, chunk: int = 256) -> float:
        """Poisson negative log-likelihood per photon of other patterns (amplitudes at
        canvas positions y, x) under the current object and probe, relative to the
        saturated model (0 = a perfect fit): how well the object predicts data it was
        not fitted to."""
        index, ramp = _windows(y, x, self.n, self.obj.shape)
        flat, total, photons = self.obj.view(-1), 0.0, 0.0
        for s in range(0, len(amplitude), chunk):
            b = slice(s, s + chunk)
            patch = flat[index[b].reshape(-1)].reshape(-1, self.n, self.n)
            probe = apply_ramps(self.probe.expand(len(patch), -1, -1), ramp[b])
            counts = torch.from_numpy(np.ascontiguousarray(amplitude[b], np.float32)).double().square()
            lam = predicted_counts(probe, patch).double()
            total += float(poisson_nll(lam, counts, 1.0).sum())
            photons += float(counts.sum())
        return total / max(photons, 1e-30)


def _windows(y, x, n: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat canvas indices (M, N, N) of each window's pixels, and the Fourier ramps that
    move the probe by each position's sub-pixel remainder."""
    iy, ix, fy, fx = window_origins(y, x, n)
    h, w = shape
    if iy.min() < 0 or ix.min() < 0 or iy.max() + n > h or ix.max() + n > w:
        raise ValueError("positions put windows outside the object canvas")
    r = np.arange(n)
    index = (iy[:, None, None] + r[None, :, None]) * w + ix[:, None, None] + r[None, None, :]
    return torch.from_numpy(index), shift_ramps(torch.from_numpy(np.stack([fy, fx], 1)), n)


def spread_subset(m: int, fraction: float) -> np.ndarray:
    """Every k-th pattern in scan order (k = 1 / fraction), starting half-way into the
    first k: a subset spread over the whole scan, whose neighbours stay in the rest."""
    k = max(2, int(round(1 / fraction)))
    return np.arange(k // 2, m, k)


def choose_passes(amplitude: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray, start: np.ndarray,
                  cfg: SolverConfig, most: int) -> tuple[int, np.ndarray]:
    """How many passes to refine `start` for, chosen from the data alone: the solver runs
    on all patterns but a spread-out held-out fraction (cfg.holdout_fraction), and the
    held-out patterns' Poisson NLL is measured before the first pass and every
    cfg.holdout_every passes, up to `most`; the pass count where it is lowest wins.
    Stops early once it has not improved for cfg.holdout_patience checks. Returns the
    passes and the (passes, NLL per photon) curve. Reads nothing but the patterns."""
    held = spread_subset(len(amplitude), cfg.holdout_fraction)
    fit = np.setdiff1d(np.arange(len(amplitude)), held)
    solver = Solver(amplitude[fit], probe, y[fit], x[fit], start, cfg)
    curve = [(0, solver.nll(amplitude[held], y[held], x[held]))]
    while solver.passes < most and len(curve) - 1 - int(np.argmin([v for _, v in curve])) < cfg.holdout_patience:
        solver.run(min(cfg.holdout_every, most - solver.passes))
        curve.append((solver.passes, solver.nll(amplitude[held], y[held], x[held])))
    curve = np.array(curve)
    return int(curve[np.argmin(curve[:, 1]), 0]), curve
