"""Placing predicted patches on the object canvas (DESIGN.md section 2, step 8).

Each patch is weighted (|P|^2, optionally trimmed to its centre), moved by the
sub-pixel part of its position, and accumulated at the integer part with one
vectorised bincount per batch; the object is the weighted sum over the summed weights.
"""

from __future__ import annotations

import numpy as np

from .neighbours import nearest_neighbours


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


def _conjugate_gradient(matvec, rhs, diag, iters=2000, tol=1e-10):
    """Jacobi-preconditioned conjugate gradient for a symmetric positive system."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r / diag
    p = z.copy()
    rz = r @ z
    for _ in range(iters):
        ap = matvec(p)
        alpha = rz / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        if np.sqrt(r @ r) <= tol * np.sqrt(rhs @ rhs):
            break
        z = r / diag
        rz, rz_old = r @ z, rz
        p = z + (rz / rz_old) * p
    return x


def phase_offsets(patches: np.ndarray, y: np.ndarray, x: np.ndarray, weight: np.ndarray,
                  neighbours: int = 6) -> np.ndarray:
    """Global phase per patch that makes overlapping patches agree.

    A diffraction pattern does not determine its patch's global phase, so patches
    predicted one at a time carry arbitrary offsets; the overlaps do determine the
    differences. For each pair of neighbours the weighted overlap product
    c_jk = sum_r w_j conj(O_j) w_k O_k (k moved into j's frame by a Fourier shift)
    gives their phase difference; the offsets are the weighted least-squares
    solution over all pairs (a graph Laplacian, solved by conjugate gradient).
    """
    m, n, _ = patches.shape
    if m < 2:
        return np.zeros(m)
    pos = np.stack([y, x], 1)
    nn = nearest_neighbours(pos, neighbours)
    pairs = np.unique(np.sort(np.stack([np.repeat(np.arange(m), nn.shape[1]), nn.ravel()], 1), 1), axis=0)
    spec = np.fft.fft2(patches * weight).astype(np.complex64)
    q = np.fft.fftfreq(n)
    c = np.empty(len(pairs), np.complex128)
    for s in range(0, len(pairs), 2048):
        j, k = pairs[s:s + 2048].T
        d = pos[k] - pos[j]
        ramp = np.exp(-2j * np.pi * (d[:, 0, None, None] * q[None, :, None] + d[:, 1, None, None] * q[None, None, :]))
        c[s:s + 2048] = np.sum(np.conj(spec[j]) * spec[k] * ramp, axis=(1, 2))
    j, k = pairs.T
    a, delta = np.abs(c), np.angle(c)
    a = a / a.max()
    # minimise sum a (phi_k - phi_j + delta)^2; a tiny ridge fixes the free global phase
    ridge = 1e-9
    diag = np.bincount(j, a, m) + np.bincount(k, a, m) + ridge

    def laplacian(phi):
        e = a * (phi[j] - phi[k])
        return np.bincount(j, e, m) - np.bincount(k, e, m) + ridge * phi

    rhs = np.bincount(j, a * delta, m) - np.bincount(k, a * delta, m)
    return _conjugate_gradient(laplacian, rhs, diag)


def fourier_shift(patches: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """out(r) = patch(r - d): exact for band-limited content, circular at the edges
    (where the probe weight is negligible)."""
    n = patches.shape[-1]
    q = np.fft.fftfreq(n)
    ramp = np.exp(-2j * np.pi * (dy[:, None, None] * q[None, :, None] + dx[:, None, None] * q[None, None, :]))
    return np.fft.ifft2(np.fft.fft2(patches) * ramp)


class Stitcher:
    """Accumulates patches on a canvas; `result()` gives the object and the weights."""

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
        self.num = np.zeros(self.shape[0] * self.shape[1], np.complex128)
        self.den = np.zeros(self.shape[0] * self.shape[1], np.float64)

    def _scatter(self, iy, ix, values, weights):
        h, w = self.shape
        n = values.shape[-1]
        r = np.arange(n)
        rows = iy[:, None, None] + r[None, :, None]
        cols = ix[:, None, None] + r[None, None, :]
        ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        idx = (rows * w + cols)[ok]
        size = h * w
        self.num += np.bincount(idx, values[ok].real, size) + 1j * np.bincount(idx, values[ok].imag, size)
        self.den += np.bincount(idx, weights[ok], size)

    def add(self, patches: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        """patches (B, N, N) complex centred on canvas positions y, x (B,)."""
        n = self.n
        ty, tx = y - n / 2, x - n / 2  # canvas coordinate of each patch's pixel 0
        iy, ix = np.floor(ty).astype(np.int64), np.floor(tx).astype(np.int64)
        fy, fx = ty - iy, tx - ix
        if self.method == "fourier":
            # shift the weighted patch and its weight so that both fall on integer
            # canvas pixels (weighting first keeps the unlit, unconstrained edges out)
            w = np.broadcast_to(self.weight, patches.shape)
            self._scatter(iy, ix, fourier_shift(patches * w, fy, fx), fourier_shift(w, fy, fx).real)
        else:  # bilinear splatting to the four surrounding canvas pixels
            vals = patches * self.weight
            for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
                c = ((1 - fy) if dy == 0 else fy) * ((1 - fx) if dx == 0 else fx)
                self._scatter(iy + dy, ix + dx, vals * c[:, None, None], np.broadcast_to(self.weight * c[:, None, None], vals.shape))

    def result(self):
        """(object (H, W) complex64 with 0 where nothing was lit, weights (H, W) float32)."""
        den = self.den.reshape(self.shape)
        num = self.num.reshape(self.shape)
        lit = den > 1e-3 * den.max()
        obj = np.where(lit, num / np.where(lit, den, 1), 0)
        return obj.astype(np.complex64), den.astype(np.float32)


def scanned_region(x, y) -> tuple[slice, slice]:
    """Rows and columns of the bounding box of the scan positions (the well-lit region
    used for display and metrics)."""
    return (slice(int(np.ceil(y.min())), int(np.floor(y.max())) + 1),
            slice(int(np.ceil(x.min())), int(np.floor(x.max())) + 1))
