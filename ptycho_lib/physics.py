"""Differentiable ptychography physics: the forward model, the loss and the overlap
constraint (docs/design.md, "Physics").

Diffraction patterns are stored with the zero frequency at index N/2 (fftshift);
windows and shifts follow ptycho_lib.geometry. Inside the solvers a negative amplitude or
count (UNMEASURED) marks a pixel the detector did not measure (a bad pixel): it adds
nothing to a loss and a modulus constraint leaves the model's value there.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .geometry import UNMEASURED, shift_ramps
from .io import release_pages


def counts_of(amplitude: torch.Tensor) -> torch.Tensor:
    """Counts from amplitudes, unmeasured pixels kept marked."""
    return torch.where(amplitude < 0, UNMEASURED, amplitude.square())


def pattern_totals(amplitude, chunk: int = 1024) -> np.ndarray:
    """Each pattern's total counts (M,), sum |amplitude|^2, read `chunk` patterns at a
    time (memory does not grow with the scan; a memory map's pages are released)."""
    out = np.empty(len(amplitude))
    for s in range(0, len(amplitude), chunk):
        part = amplitude[s:s + chunk]
        out[s:s + len(part)] = np.sum(np.asarray(part, np.float64) ** 2, axis=(-2, -1))
        release_pages(part)
    return out


def scale_probe(probe: np.ndarray, nphotons: float) -> np.ndarray:
    """Give the probe the photon scale: sum |P|^2 = mean total counts per pattern, so
    predicted counts compare directly with measured ones for |O| ~ 1."""
    return probe * np.sqrt(nphotons / np.sum(np.abs(probe) ** 2))


def far_field(exit_wave: torch.Tensor) -> torch.Tensor:
    """Complex far field, zero frequency at the centre, energy conserving."""
    return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1))


def predicted_counts(probe: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """lambda = |FFT(P * O)|^2 for complex object patches (..., N, N), as re^2 + im^2
    (abs would take a square root, and its backward divide by it)."""
    return torch.view_as_real(far_field(probe * patches)).square().sum(-1)


def single_pattern_estimate(amplitude: torch.Tensor, probe: torch.Tensor, iterations: int) -> torch.Tensor:
    """A first guess of each pattern's object patch from that pattern alone: error
    reduction with the known probe, starting from a flat object. Each iteration
    replaces the modulus of FFT(P O) by the measured amplitude, keeps its phase and
    takes the ePIE object step back. amplitude (B, N, N) and probe (N, N) on one scale
    (|FFT(P)|^2 summing to the patterns' energy). It settles within a few iterations
    on an estimate whose fine detail and amplitude are close to the truth but whose
    large-scale phase is not (docs/benchmarks.md); the network learns the rest
    (PtychoNet)."""
    measured = torch.fft.ifftshift(amplitude, dim=(-2, -1))
    known = measured >= 0
    step = probe.conj() / probe.abs().square().max().clamp_min(1e-30)
    obj = torch.ones(amplitude.shape, dtype=torch.complex64, device=amplitude.device)
    for _ in range(iterations):
        exit_wave = probe * obj
        far = torch.fft.fft2(exit_wave, norm="ortho")
        obj = obj + step * (torch.fft.ifft2(torch.where(known, measured * torch.sgn(far), far), norm="ortho")
                            - exit_wave)
    return obj


def poisson_nll(lam: torch.Tensor, counts: torch.Tensor, nphotons: float) -> torch.Tensor:
    """Poisson negative log-likelihood of the counts per pattern, minus that of the
    saturated model (so a perfect fit scores 0), divided by the photons per pattern so
    that the learning rate does not depend on dose. Unmeasured pixels (counts < 0) add
    nothing. Shape (...,) over leading dims."""
    lam, measured = lam.clamp_min(1e-6), counts.clamp_min(0)
    nll = lam - measured * torch.log(lam) - (measured - torch.special.xlogy(measured, measured))
    if counts.min() < 0:  # only then: a scan without bad pixels sums exactly as it always did
        nll = nll * (counts >= 0)
    return nll.sum(dim=(-2, -1)) / nphotons


def amplitude_mae(lam: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between predicted and measured amplitudes, per pattern, over
    the measured pixels."""
    known = counts >= 0
    err = (lam.clamp_min(0).sqrt() - counts.clamp_min(0).sqrt()).abs() * known
    return err.sum(dim=(-2, -1)) / known.sum(dim=(-2, -1)).clamp_min(1)


def overlap_constraint(patches: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor,
                       align_phase: bool = True) -> torch.Tensor:
    """Make the C patches of each group agree on the object they share.

    patches (B, C, N, N) complex, offsets (B, C, 2) = each member's position minus the
    group centre (pixels), weight (N, N), or (B, 1, N, N) per group, real >= 0
    (|P|^2, largest value 1). Each member's window becomes the weighted average of
    every member's view of it: sum_j w O_j moved by d_j - d_i, over sum_j w moved the
    same way. The moves are exact Fourier shifts (a bilinear one blurs by an amount
    that depends on each group's sub-pixel offsets, which the network cannot know;
    docs/benchmarks.md). The sum over members is made once, in Fourier space, on a
    zero-padded grid; numerator and denominator are each moved into every member's
    frame before dividing, so the division never amplifies a shift's ringing. Where
    the summed weight is small (window corners) a member keeps its own prediction.

    A pattern says nothing about its patch's global phase, so the network cannot know
    it; with `align_phase` the members are first rotated to one common global phase,
    so that the constraint asks only for what the data determine.
    """
    b, c, n, _ = patches.shape
    if c == 1:
        return patches
    # zero padding by the largest offset keeps every member's content from wrapping
    # into another's window; rounded up to a quarter window, so that the padded size
    # (on which a shift's ringing depends) is the same for every batch of a scan
    quarter = max(n // 4, 1)
    s = n + 2 * quarter * max(1, int(math.ceil(float(offsets.abs().max()) / quarter)))
    w = weight.to(patches.real.dtype)
    ramps = shift_ramps(offsets, s, patches.dtype)  # (B, C, S, S): move by d_j
    members = torch.fft.fft2(patches * w, s=(s, s)) * ramps  # each weighted patch at its offset
    if align_phase:
        # pairwise overlaps H_ij = <A_i, A_j> ~ |.| exp(i(phi_j - phi_i)) (Parseval: in
        # Fourier space as well); the leading eigenvector v of H has arg(v_i) = -phi_i,
        # so multiplying by v_i / |v_i| gives every member the same global phase
        flat = members.reshape(b, c, s * s)
        with torch.no_grad():
            h = (flat @ flat.mH).conj()
            v = torch.linalg.eigh(h)[1][..., -1]
            v = v * (v.sum(-1, keepdim=True).conj() / v.sum(-1, keepdim=True).abs().clamp_min(1e-12))
            rot = v / v.abs().clamp_min(1e-12)  # gauge: consistent members stay as they are
        patches = patches * rot[..., None, None]
        total = (rot[:, None, :] @ flat).reshape(b, 1, s, s)  # the rotated members summed
    else:
        total = members.sum(1, keepdim=True)
    back = ramps.conj()  # move by -d_i: into each member's own frame
    num = torch.fft.ifft2(total * back)[..., :n, :n]
    with torch.no_grad():  # real: half a spectrum is enough
        half = s // 2 + 1
        wsum = torch.fft.rfft2(w, s=(s, s)) * ramps[..., :half].sum(1, keepdim=True)
        den = torch.fft.irfft2(wsum * back[..., :half], s=(s, s))[..., :n, :n].clamp_min(0)
    floor = 1e-2 * float(weight.max())  # below this summed weight a member's own value dominates
    return (num + floor * patches) * (1 / (den + floor))
