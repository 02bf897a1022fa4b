"""The slow phase of a stitched object from the patterns' centres of mass
(differential phase contrast), for the network's reconstruction (docs/method.md,
"Slow phase from the centroids").

A diffraction pattern's intensity centroid is the exit wave's mean phase gradient:
for psi = P O, sum_q q |Psi(q)|^2 / sum |Psi|^2 = N / (2 pi) * sum_r |psi|^2 grad arg
psi / sum |psi|^2 (q in detector pixels from the centre, r in object pixels). So the
measured centroid minus the one the current object predicts is, up to N / (2 pi), the
probe-weighted mean gradient of the object's phase error at that position. These
gradients are spread over the canvas, smoothed at about the probe's size (finer
detail is not in one number per pattern), and integrated by weighted least squares
into a smooth phase that is added to the object, as far as the patterns left out of
that fit confirm it. A single-pattern network misses exactly this slow phase (a
patch's phase offset is free and its gentle curvature is hardly in one pattern); the
overlaps fix the offsets, the centroids the rest.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .geometry import apply_ramps, canvas_windows
from .io import release_pages
from .linalg import conjugate_gradient
from .physics import far_field, pattern_totals


def centroids(intensity: torch.Tensor) -> torch.Tensor:
    """Intensity centroids (B, 2) = (row, column) in detector pixels from the centre
    pixel N/2 of centred patterns (B, N, N)."""
    n = intensity.shape[-1]
    q = torch.arange(n, dtype=torch.float64) - n // 2
    w = intensity.double()
    total = w.sum((-2, -1)).clamp_min(1e-30)
    rows, cols = w.sum(-1), w.sum(-2)  # the projections on each axis
    return torch.stack([(rows * q).sum(-1) / total, (cols * q).sum(-1) / total], -1)


def _probe_centre(probe: np.ndarray) -> tuple[float, float]:
    """Where the probe's intensity is centred in its window (pixels)."""
    p = np.abs(probe) ** 2
    r = np.arange(p.shape[0])
    return float(p.sum(1) @ r / p.sum()), float(p.sum(0) @ r / p.sum())


def probe_radius(probe: np.ndarray) -> float:
    """The rms radius of the probe's intensity (pixels): the scale of what one
    pattern's centroid averages over."""
    p = np.abs(probe) ** 2
    r = np.arange(p.shape[0])
    cy, cx = _probe_centre(probe)
    return float(np.sqrt((p.sum(1) @ (r - cy) ** 2 + p.sum(0) @ (r - cx) ** 2) / p.sum()))


def _per_radian(shift: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Centroid shifts (detector pixels) as phase gradients (rad per object pixel)."""
    return shift * (2 * math.pi / probe.shape[0])


def _exit_waves(obj: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray, chunk: int = 256):
    """(rows, P O) for `chunk` positions at a time: the exit waves (B, N, N) that `obj`
    predicts at (y, x) on its canvas, the probe moved by each sub-pixel remainder."""
    n, m = probe.shape[0], len(y)
    index, ramp = canvas_windows(y, x, n, obj.shape)
    flat = torch.from_numpy(obj.astype(np.complex64, copy=False)).reshape(-1)
    probe_t = torch.from_numpy(probe.astype(np.complex64))
    for s in range(0, m, chunk):
        b = slice(s, min(s + chunk, m))
        yield b, apply_ramps(probe_t, ramp[b]) * flat[index[b].reshape(-1)].reshape(-1, n, n)


def centroid_errors(obj: np.ndarray, probe: np.ndarray, amplitude, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(M, 2) measured minus predicted centroids (detector pixels) of the patterns at
    (y, x) on `obj`'s canvas: the measured ones from the amplitudes (M, N, N), sqrt of
    the counts, read a chunk at a time (a memory map stays one), the predicted ones of
    |FFT(P O)|^2."""
    out = np.empty((len(y), 2))
    for b, waves in _exit_waves(obj, probe, y, x):
        part = amplitude[b]
        measured = torch.from_numpy(np.asarray(part, np.float32)).clamp_min(0).square()
        release_pages(part)
        out[b] = (centroids(measured) - centroids(far_field(waves).abs().square())).numpy()
    return out


class _Rows:
    """Rows `rows` of an array, read slice by slice (a memory map's rows on demand)."""

    def __init__(self, array, rows: np.ndarray):
        self.array, self.rows = array, rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, s: slice):
        rows = self.rows[s]
        part = self.array[rows]
        if len(rows):
            release_pages(self.array[rows.min():rows.max() + 1])
        return part


def _bilinear_splat(values: np.ndarray, y: np.ndarray, x: np.ndarray, shape) -> np.ndarray:
    """Each value spread over the four grid nodes around its (y, x), bilinearly."""
    h, w = shape
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    ty, tx = y - y0, x - x0
    out = np.zeros(h * w)
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            rr, cc = np.clip(y0 + dy, 0, h - 1), np.clip(x0 + dx, 0, w - 1)
            out += np.bincount(rr * w + cc, values * wy * wx, h * w)
    return out.reshape(h, w)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur by FFT on a zero-padded grid (no wrap-around)."""
    h, w = img.shape
    pad = int(3 * sigma) + 1
    big = np.zeros((h + 2 * pad, w + 2 * pad))
    big[pad:pad + h, pad:pad + w] = img
    fy, fx = np.fft.fftfreq(big.shape[0])[:, None], np.fft.rfftfreq(big.shape[1])[None, :]
    spec = np.fft.rfft2(big) * np.exp(-2 * (math.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    return np.fft.irfft2(spec, big.shape)[pad:pad + h, pad:pad + w]


def _grad(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences along rows and columns (zero on the last row / column)."""
    dy, dx = np.zeros_like(u), np.zeros_like(u)
    dy[:-1], dx[:, :-1] = u[1:] - u[:-1], u[:, 1:] - u[:, :-1]
    return dy, dx


def _grad_adjoint(py: np.ndarray, px: np.ndarray) -> np.ndarray:
    out = np.zeros_like(py)
    out[1:] += py[:-1]
    out[:-1] -= py[:-1]
    out[:, 1:] += px[:, :-1]
    out[:, :-1] -= px[:, :-1]
    return out


def integrate_gradients(gy: np.ndarray, gx: np.ndarray, weight: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """The field u whose forward differences best match (gy, gx) where `weight` (0..1)
    trusts them: minimises sum (weight + eps) |grad u|^2 - 2 weight grad u . g, so u
    continues smoothly where nothing was measured."""
    trust = weight + eps
    diag = np.zeros_like(weight)  # diagonal of grad^T diag(trust) grad, for the preconditioner
    diag[:-1] += trust[:-1]
    diag[1:] += trust[:-1]
    diag[:, :-1] += trust[:, :-1]
    diag[:, 1:] += trust[:, :-1]
    rhs = _grad_adjoint(weight * gy, weight * gx).ravel()

    def matvec(v):
        dy, dx = _grad(v.reshape(weight.shape))
        return _grad_adjoint(trust * dy, trust * dx).ravel()

    u = conjugate_gradient(matvec, rhs, diag.ravel(), iters=1000, tol=1e-6).reshape(weight.shape)
    return u - u[weight > 0.5 * weight.max()].mean()


def _upsample(u: np.ndarray, d: int, origin: tuple[int, int], shape) -> np.ndarray:
    """A coarse grid (node i at canvas pixel origin + d * i) linearly interpolated onto
    a canvas of `shape`; beyond the grid its edge values continue."""
    for axis, size in ((0, shape[0]), (1, shape[1])):
        t = np.clip((np.arange(size) - origin[axis]) / d, 0, u.shape[axis] - 1)
        i0 = np.floor(t).astype(np.int64)
        i1 = np.minimum(i0 + 1, u.shape[axis] - 1)
        f = (t - i0).astype(u.dtype).reshape((-1, 1) if axis == 0 else (1, -1))
        u = np.take(u, i0, axis) * (1 - f) + np.take(u, i1, axis) * f
    return u


MIN_PATTERNS = 100  # fewer cannot tell the slow phase from the noise: no correction


def slow_phase(obj: np.ndarray, probe: np.ndarray, amplitude, bad_pixels, y: np.ndarray, x: np.ndarray,
               scale: float, patterns: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The smooth phase (H, W) that brings the centroids `obj` predicts toward the
    measured ones, and the fraction of the fit it holds. The phase-gradient errors
    (measured minus predicted centroids over N / (2 pi): the probe-weighted mean
    gradient of the phase error at each position) are spread over the canvas by a
    Gaussian of `scale` probe radii (probe_radius) and integrated (_integrated). The
    fit is shrunk by how far it is signal: fitted again from each half of the patterns
    (alternate ones in raster order), the two agree in the slow phase and differ in
    the noise, so their product over the lit canvas estimates the signal's power and
    the full fit's square its power with the noise; their ratio (0..1) is the Wiener
    factor applied. At low dose the centroids are mostly noise and little is added.
    No correction for a scan with unmeasured detector pixels: the theorem needs the
    whole pattern, and completing it by the prediction still lowered a test scan's
    phase (docs/method.md). `patterns`: the indices of the patterns to use (default
    all)."""
    if patterns is not None:
        amplitude, y, x = _Rows(amplitude, patterns), y[patterns], x[patterns]
    if len(y) < MIN_PATTERNS or (bad_pixels is not None and bad_pixels.any()):
        return np.zeros(obj.shape, np.float32), 0.0
    g = _per_radian(centroid_errors(obj, probe, amplitude, y, x), probe)
    sigma = scale * probe_radius(probe)
    order = np.lexsort((x, y))  # whatever the file's order
    lit = np.abs(obj) > 0
    fits = []
    for part in (order[0::2], order[1::2], order):
        u = _integrated(g[part], probe, y[part], x[part], obj.shape, sigma)
        fits.append(u - u[lit].mean())
    first, second, whole = fits
    factor = float(np.clip(np.sum((first * second)[lit]) / max(float(np.sum(whole[lit] ** 2)), 1e-30), 0.0, 1.0))
    return factor * whole, factor


class _Spread:
    """Values at the positions (y, x), one per pattern, spread over a grid of spacing
    sigma / 3 by a Gaussian of `sigma` pixels, placed by the positions, not the canvas
    (a larger canvas gives the same answer); each sample sits where the probe's
    intensity is centred in its window."""

    def __init__(self, probe: np.ndarray, y: np.ndarray, x: np.ndarray, sigma: float):
        (py, px), half = _probe_centre(probe), probe.shape[0] / 2
        cy, cx = y + py - half, x + px - half
        self.d, margin, self.sigma = max(1, int(sigma / 3)), 3 * sigma, sigma
        self.origin = (int(np.floor(cy.min() - margin)), int(np.floor(cx.min() - margin)))
        self.grid = (int((cy.max() + margin - self.origin[0]) // self.d) + 2,
                     int((cx.max() + margin - self.origin[1]) // self.d) + 2)
        self.cy, self.cx = (cy - self.origin[0]) / self.d, (cx - self.origin[1]) / self.d
        self.density = self(np.ones(len(y)))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return _gaussian_blur(_bilinear_splat(values, self.cy, self.cx, self.grid), self.sigma / self.d)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """The Gaussian-weighted mean of the values around each grid node."""
        return self(values) / np.maximum(self.density, 1e-12)

    def on_canvas(self, u: np.ndarray, shape) -> np.ndarray:
        return _upsample(u.astype(np.float32), self.d, self.origin, shape)


def _integrated(g: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray, shape, sigma: float) -> np.ndarray:
    """Gradient samples g (M, 2) at positions (y, x), spread by a Gaussian of `sigma`
    pixels (_Spread) and integrated on that grid, interpolated onto a canvas of
    `shape`."""
    spread = _Spread(probe, y, x, sigma)
    gy, gx = (spread.mean(g[:, k] * spread.d) for k in (0, 1))  # rad per grid pixel
    return spread.on_canvas(integrate_gradients(gy, gx, spread.density / spread.density.max()), shape)


def predicted_totals(obj: np.ndarray, probe: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The total counts (M,) that `obj` predicts at (y, x): sum_r |P O|^2 (Parseval)."""
    out = np.empty(len(y))
    for b, waves in _exit_waves(obj, probe, y, x):
        out[b] = waves.abs().square().sum((-2, -1)).double().numpy()
    return out


MODULUS_ROUNDS = 3  # each round sharpens the smoothed factor toward what the totals ask


def slow_modulus(obj: np.ndarray, probe: np.ndarray, amplitude, bad_pixels, y: np.ndarray, x: np.ndarray,
                 scale: float, patterns: np.ndarray | None = None) -> np.ndarray:
    """The smooth factor (H, W) on the object's modulus that brings the total counts
    `obj` predicts to the measured ones. A pattern's total is sum_r |P O|^2, the
    probe-weighted mean of |O|^2 there (the zeroth moment, as the centroid is the
    first), so log(measured / predicted) is that mean of the log-error of |O|^2. Spread
    over the canvas by a Gaussian of `scale` probe radii and halved, it is the log of
    the factor; MODULUS_ROUNDS rounds each correct what the previous left. Run before
    the centroids: a centroid weights the exit wave's phase gradient by |P O|^2, the
    probe's own gradient included, so a wrong modulus moves it as a phase error would
    (docs/benchmarks.md). No correction for fewer than MIN_PATTERNS patterns or with
    unmeasured detector pixels (as slow_phase); `patterns` as there."""
    if patterns is not None:
        amplitude, y, x = _Rows(amplitude, patterns), y[patterns], x[patterns]
    if len(y) < MIN_PATTERNS or (bad_pixels is not None and bad_pixels.any()):
        return np.ones(obj.shape, np.float32)
    measured = pattern_totals(amplitude)
    spread = _Spread(probe, y, x, scale * probe_radius(probe))
    factor = np.ones(obj.shape, np.float32)
    for _ in range(MODULUS_ROUNDS):
        predicted = predicted_totals(obj * factor, probe, y, x)
        log_ratio = np.log(np.maximum(measured, 1e-30) / np.maximum(predicted, 1e-30))
        factor *= np.exp(0.5 * spread.on_canvas(spread.mean(log_ratio), obj.shape))
    return factor


def with_slow_modulus(obj: np.ndarray, probe: np.ndarray, amplitude, bad_pixels, y: np.ndarray, x: np.ndarray,
                      scale: float, patterns: np.ndarray | None = None) -> np.ndarray:
    """`obj` (complex64) times slow_modulus; unlit pixels (0) stay 0."""
    return (obj * slow_modulus(obj, probe, amplitude, bad_pixels, y, x, scale, patterns)).astype(np.complex64,
                                                                                                  copy=False)


def with_slow_phase(obj: np.ndarray, probe: np.ndarray, amplitude, bad_pixels, y: np.ndarray, x: np.ndarray,
                    scale: float, patterns: np.ndarray | None = None) -> np.ndarray:
    """`obj` (complex64) times exp(i slow_phase); unlit pixels (0) stay 0."""
    u, _ = slow_phase(obj, probe, amplitude, bad_pixels, y, x, scale, patterns)
    return (obj * np.exp(1j * u)).astype(np.complex64, copy=False)
