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
from .physics import far_field


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
        iy, ix, fy, fx = window_origins(y, x, self.n)
        self.iy, self.ix = torch.from_numpy(iy), torch.from_numpy(ix)
        self.ramp = shift_ramps(torch.from_numpy(np.stack([fy, fx], 1)), self.n)
        h, w = self.obj.shape
        if self.iy.min() < 0 or self.ix.min() < 0 or self.iy.max() + self.n > h or self.ix.max() + self.n > w:
            raise ValueError("positions put windows outside the object canvas")
        r = torch.arange(self.n)
        self.rows = self.iy[:, None, None] + r[None, :, None]
        self.cols = self.ix[:, None, None] + r[None, None, :]
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[float] = []

    def _index(self, b):
        return (self.rows[b] * self.obj.shape[1] + self.cols[b]).reshape(-1)

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
        for it in range(iterations or self.cfg.iterations):
            self.step(self.cfg.probe_refinement and it >= 5)
            if callback:
                callback(it, self)
        return self.obj.numpy()
