"""The object canvas and the windows on it (docs/design.md, "Geometry").

A pattern's N x N window is centred on its scan position: window pixel i sits at
object coordinate pos - N/2 + i. Positions are in object pixels, (y, x) = (row,
column). A window is cut at the integer part of pos - N/2 and the rest, a fraction
of a pixel, is applied as a Fourier phase ramp (to the probe, or to a patch before
it is stitched), so the object itself is never interpolated.
"""

from __future__ import annotations

import math

import numpy as np
import torch

UNMEASURED = -1.0  # marks a detector pixel that measured nothing (a bad pixel) in amplitudes and counts
LIT_FRACTION = 1e-3  # a canvas pixel is lit when its summed weight exceeds this fraction of the maximum


def canvas_geometry(x, y, n, shape=None):
    """Canvas shape and the offset (oy, ox) added to positions so every window fits.
    With a reference shape (the file's objectGuess) positions are used as they are."""
    if shape is not None:
        return tuple(shape), (0.0, 0.0)
    oy = max(0.0, float(np.ceil(n / 2 - y.min())))
    ox = max(0.0, float(np.ceil(n / 2 - x.min())))
    h = int(np.floor(y.max() + oy - n / 2)) + n + 1
    w = int(np.floor(x.max() + ox - n / 2)) + n + 1
    return (h, w), (oy, ox)


def window_origins(y, x, n: int):
    """(iy, ix, fy, fx): the integer canvas pixel of each window's pixel 0 (int64) and
    the sub-pixel remainder in [0, 1) that a Fourier ramp applies."""
    ty, tx = np.asarray(y, np.float64) - n / 2, np.asarray(x, np.float64) - n / 2
    iy, ix = np.floor(ty), np.floor(tx)
    return iy.astype(np.int64), ix.astype(np.int64), ty - iy, tx - ix


def windows_outside(y, x, n: int, shape) -> np.ndarray:
    """Which windows reach past a canvas of `shape`: a window centred on p spans the
    coordinates [p - N/2, p + N/2 - 1]."""
    h, w = shape
    lo, hi = n / 2, n / 2 - 1
    return (x - lo < 0) | (x + hi > w - 1) | (y - lo < 0) | (y + hi > h - 1)


def scanned_region(x, y) -> tuple[slice, slice]:
    """Rows and columns of the bounding box of the scan positions (the well-lit region
    used for display and metrics)."""
    return (slice(int(np.ceil(y.min())), int(np.floor(y.max())) + 1),
            slice(int(np.ceil(x.min())), int(np.floor(x.max())) + 1))


def lit(weight: np.ndarray) -> np.ndarray:
    """Canvas pixels that the windows light enough to be reconstructed."""
    return weight > LIT_FRACTION * weight.max()


def ramp_factors(shifts: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """The Fourier phase ramp exp(-2 pi i (dy qy + dx qx)) of shifts (..., 2) = (dy, dx)
    pixels on a grid of `size` (S or (H, W)), as its two separable factors along rows
    (..., H) and columns (..., W), complex128: a spectrum multiplied by their outer
    product is the image moved by (dy, dx)."""
    h, w = (size, size) if isinstance(size, int) else size
    d = shifts.to(torch.float64)
    qy = torch.fft.fftfreq(h, dtype=torch.float64, device=shifts.device)
    qx = torch.fft.fftfreq(w, dtype=torch.float64, device=shifts.device)
    return torch.exp(-2j * math.pi * d[..., 0, None] * qy), torch.exp(-2j * math.pi * d[..., 1, None] * qx)


def shift_ramps(shifts: torch.Tensor, size, dtype=torch.complex64) -> torch.Tensor:
    """The ramps (..., H, W) themselves (phases in float64; the factors, then their
    product, in `dtype`)."""
    ey, ex = (f.to(dtype) for f in ramp_factors(shifts, size))
    return ey[..., :, None] * ex[..., None, :]


def apply_ramps(img: torch.Tensor, ramp: torch.Tensor) -> torch.Tensor:
    """img moved by the shifts whose shift_ramps are `ramp` (circular at the edges); one
    image (H, W) and a stack of ramps give the stack of its shifted copies, for the cost
    of one forward transform."""
    return torch.fft.ifft2(torch.fft.fft2(img) * ramp)


def canvas_windows(y, x, n: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat canvas indices (M, N, N) of each window's pixels on a canvas of `shape`,
    and the Fourier ramps that move the probe by each position's sub-pixel remainder
    (the solver's and the centroids' forward model)."""
    iy, ix, fy, fx = window_origins(y, x, n)
    h, w = shape
    if iy.min() < 0 or ix.min() < 0 or iy.max() + n > h or ix.max() + n > w:
        raise ValueError("positions put windows outside the object canvas")
    r = np.arange(n)
    index = (iy[:, None, None] + r[None, :, None]) * w + ix[:, None, None] + r[None, None, :]
    return torch.from_numpy(index), shift_ramps(torch.from_numpy(np.stack([fy, fx], 1)), n)
