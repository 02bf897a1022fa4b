"""Differentiable ptychography physics (DESIGN.md section 2, steps 4-6).

Conventions: a window of N x N pixels is centred on its scan position, pixel index i
of the window maps to object coordinate pos - N/2 + i; diffraction patterns are stored
with the zero frequency at index N/2 (fftshift); shifts are (dy, dx) in pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def scale_probe(probe: np.ndarray, nphotons: float) -> np.ndarray:
    """Give the probe the photon scale: sum |P|^2 = mean total counts per pattern, so
    predicted counts compare directly with measured ones for |O| ~ 1."""
    return probe * np.sqrt(nphotons / np.sum(np.abs(probe) ** 2))


def far_field(exit_wave: torch.Tensor) -> torch.Tensor:
    """Complex far field, zero frequency at the centre, energy conserving."""
    return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1))


def predicted_counts(probe: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """lambda = |FFT(P * O)|^2 for complex object patches (..., N, N)."""
    return far_field(probe * patches).abs().square()


def poisson_nll(lam: torch.Tensor, counts: torch.Tensor, nphotons: float) -> torch.Tensor:
    """Poisson negative log-likelihood of the counts per pattern, minus that of the
    saturated model (so a perfect fit scores 0), divided by the photons per pattern so
    that the learning rate does not depend on dose. Shape (...,) over leading dims."""
    lam = lam.clamp_min(1e-6)
    nll = lam - counts * torch.log(lam) - (counts - torch.special.xlogy(counts, counts))
    return nll.sum(dim=(-2, -1)) / nphotons


def amplitude_mae(lam: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between predicted and measured amplitudes, per pattern."""
    return (lam.clamp_min(0).sqrt() - counts.sqrt()).abs().mean(dim=(-2, -1))


def translate(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Bilinear sub-pixel translation of complex images (B, H, W) by shifts (B, 2):
    out(r) = in(r - shift); zero outside. Differentiable in the images."""
    b, h, w = images.shape
    ys = torch.arange(h, dtype=shifts.dtype, device=images.device)
    xs = torch.arange(w, dtype=shifts.dtype, device=images.device)
    gy = (ys[None, :, None] - shifts[:, 0, None, None]) * (2 / (h - 1)) - 1
    gx = (xs[None, None, :] - shifts[:, 1, None, None]) * (2 / (w - 1)) - 1
    grid = torch.stack([gx.expand(b, h, w), gy.expand(b, h, w)], dim=-1)
    ri = torch.view_as_real(images).permute(0, 3, 1, 2)  # (B, 2, H, W)
    out = F.grid_sample(ri, grid.to(ri.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    return torch.view_as_complex(out.permute(0, 2, 3, 1).contiguous())


def overlap_constraint(patches: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor,
                       align_phase: bool = True) -> torch.Tensor:
    """Make the C patches of each group agree on the object they share.

    patches (B, C, N, N) complex, offsets (B, C, 2) = each member's position minus the
    group centre (pixels), weight (N, N) real >= 0 (|P|^2). The patches are placed on
    a shared canvas at their offsets, averaged with the weights, and the C windows are
    cut back out.

    A pattern says nothing about its patch's global phase, so the network cannot know
    it; with `align_phase` the members are first rotated to one common global phase,
    so that the constraint asks only for what the data determine.
    """
    b, c, n, _ = patches.shape
    if c == 1:
        return patches
    pad = int(math.ceil(float(offsets.abs().max()))) + 1
    s = n + 2 * pad
    flat_off = offsets.reshape(b * c, 2)
    w = weight.to(patches.real.dtype)

    def placed(img):  # (B, C, N, N) -> each member placed on the canvas (B, C, S, S)
        big = torch.view_as_real(img.reshape(b * c, n, n)).permute(0, 3, 1, 2)
        big = torch.view_as_complex(F.pad(big, (pad,) * 4).permute(0, 2, 3, 1).contiguous())
        return translate(big, flat_off).reshape(b, c, s, s)

    members = placed(patches * w)
    if align_phase:
        # pairwise overlaps H_ij = <A_i, A_j> ~ |.| exp(i(phi_j - phi_i)); the leading
        # eigenvector v of H has arg(v_i) = -phi_i, so multiplying by v_i / |v_i| gives
        # every member the same global phase (spectral synchronisation)
        with torch.no_grad():
            flat = members.reshape(b, c, s * s)
            h = flat.conj() @ flat.transpose(1, 2)
            v = torch.linalg.eigh(h)[1][..., -1]
            v = v * (v.sum(-1, keepdim=True).conj() / v.sum(-1, keepdim=True).abs().clamp_min(1e-12))
            rot = v / v.abs().clamp_min(1e-12)  # gauge: consistent members stay as they are
        members = members * rot[..., None, None]
    den = placed(w.to(patches.dtype).expand(b, c, n, n)).sum(1).real + 1e-6 * float(weight.max())
    canvas = (members.sum(1) / den)[:, None].expand(b, c, s, s).reshape(b * c, s, s)
    return translate(canvas, -flat_off)[:, pad:pad + n, pad:pad + n].reshape(b, c, n, n)
