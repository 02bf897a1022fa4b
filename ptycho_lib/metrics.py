"""Image-quality metrics against a reference object (docs/design.md, "Metrics").

`compare` first removes what the data cannot determine — a global phase offset, a
linear phase ramp, an amplitude scale and a sub-pixel shift — then scores amplitude
and phase with SSIM and PSNR (peak = the reference's data range) and the complex
object with Fourier ring correlation.
"""

from __future__ import annotations

import numpy as np
import torch

from .geometry import ramp_factors


def _gauss_filter(img: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian filter, 'valid' region only (no padding artefacts)."""
    t = np.arange(-radius, radius + 1)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    out = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, img)
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="valid"), 0, out)


def ssim(img: np.ndarray, ref: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004: Gaussian window sigma 1.5,
    K1 = 0.01, K2 = 0.03), with the dynamic range taken from the reference."""
    img = img.astype(np.float64)
    ref = ref.astype(np.float64)
    L = float(np.ptp(ref)) if data_range is None else data_range
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mu_x, mu_y = _gauss_filter(img), _gauss_filter(ref)
    sxx = _gauss_filter(img * img) - mu_x**2
    syy = _gauss_filter(ref * ref) - mu_y**2
    sxy = _gauss_filter(img * ref) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """Peak signal-to-noise ratio with the reference's data range as the peak."""
    mse = float(np.mean((img.astype(np.float64) - ref) ** 2))
    return float(10 * np.log10(np.ptp(ref) ** 2 / mse)) if mse > 0 else float("inf")


def remove_phase_offset(obj: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """Rotate obj's global phase to match ref (or to zero mean phase without one)."""
    target = np.vdot(obj, ref) if ref is not None else np.conj(np.sum(obj))
    return obj * np.exp(1j * np.angle(target))


def remove_phase_ramp(obj: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Multiply obj by the linear phase ramp and offset that best match ref.

    The slopes come from the mean phase advance of z = ref * conj(obj) between
    neighbouring pixels (no unwrapping needed); the offset from the remainder."""
    z = ref * np.conj(obj)
    gy = np.angle(np.sum(z[1:, :] * np.conj(z[:-1, :])))
    gx = np.angle(np.sum(z[:, 1:] * np.conj(z[:, :-1])))
    yy, xx = np.mgrid[: obj.shape[0], : obj.shape[1]]
    ramped = obj * np.exp(1j * (gy * yy + gx * xx))
    return remove_phase_offset(ramped, ref)


def _shift(img: np.ndarray, dy: float, dx: float, pad: int = 16) -> np.ndarray:
    """img moved by (dy, dx) with a Fourier shift of its mirror-padded copy (so that
    the borders neither wrap around nor ring)."""
    big = np.pad(img, pad, mode="reflect")
    ey, ex = (f.numpy() for f in ramp_factors(torch.tensor([dy, dx], dtype=torch.float64), big.shape))
    return np.fft.ifft2(np.fft.fft2(big) * np.outer(ey, ex))[pad:-pad, pad:-pad]


def _xcorr_peak(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Shift d with b(r) ~ a(r - d): integer cross-correlation peak, then refined on a
    0.05-px grid around it with a matrix-multiply (upsampled) DFT."""
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))  # tame the borders
    spec = np.fft.fft2((b - b.mean()) * win) * np.conj(np.fft.fft2((a - a.mean()) * win))
    h, w = spec.shape
    py, px = np.unravel_index(int(np.argmax(np.abs(np.fft.ifft2(spec)))), spec.shape)
    py, px = (py - h if py > h / 2 else py), (px - w if px > w / 2 else px)
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    best = (float(py), float(px))
    for span, step in ((1.0, 0.05), (0.05, 0.0025)):
        dy = best[0] + np.arange(-span, span + step / 2, step)
        dx = best[1] + np.arange(-span, span + step / 2, step)
        cc = np.abs(np.exp(2j * np.pi * np.outer(dy, fy)) @ spec @ np.exp(2j * np.pi * np.outer(fx, dx)))
        iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
        best = (float(dy[iy]), float(dx[ix]))
    return best


def register(obj: np.ndarray, ref: np.ndarray, rounds: int = 3) -> tuple[float, float]:
    """Sub-pixel shift (dy, dx) that moves obj onto ref. Repeated on the shifted
    image so that the apodisation's pull towards zero shrinks with the residual."""
    total = (0.0, 0.0)
    moved = obj
    for _ in range(rounds):
        d = _xcorr_peak(moved, ref)
        total = (total[0] + d[0], total[1] + d[1])
        moved = _shift(obj, *total)
    return total


def frc(a: np.ndarray, b: np.ndarray) -> dict:
    """Fourier ring correlation of two images (Hann-apodised), with the frequency
    where it first drops below the 1/2-bit threshold (van Heel & Schatz 2005)."""
    h, w = a.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    # without the means, the window's spectrum would dominate the first rings
    fa = np.fft.fftshift(np.fft.fft2((a - a.mean()) * win))
    fb = np.fft.fftshift(np.fft.fft2((b - b.mean()) * win))
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    nbins = min(h, w) // 2
    ring = np.minimum((np.hypot(fy, fx) * 2 * nbins).astype(int), nbins)  # 0.5 cycles/px = bin nbins
    keep = ring < nbins
    r = ring[keep]
    num = np.bincount(r, (fa * np.conj(fb))[keep].real, nbins)
    den = np.sqrt(np.bincount(r, np.abs(fa[keep]) ** 2, nbins) * np.bincount(r, np.abs(fb[keep]) ** 2, nbins))
    curve = num / np.maximum(den, 1e-30)
    count = np.bincount(r, minlength=nbins)
    half_bit = (0.2071 + 1.9102 / np.sqrt(count)) / (1.2071 + 0.9102 / np.sqrt(count))
    freq = (np.arange(nbins) + 0.5) / (2 * nbins)
    below = np.nonzero(curve[1:] < half_bit[1:])[0]
    cross = float(freq[below[0] + 1]) if len(below) else 0.5
    return {"frequency": freq.tolist(), "frc": curve.tolist(), "threshold_half_bit": half_bit.tolist(),
            "resolution_cycles_per_pixel": cross}


def compare(obj: np.ndarray, ref: np.ndarray, region=None, pixel_size_m: float | None = None) -> dict:
    """Scores of obj against ref over `region` (a pair of slices; default: all but a
    border) after removing the global phase, a linear phase ramp, a sub-pixel shift and
    the amplitude scale. The reference is the one moved (whole, then cropped): a
    reconstruction has jumps at the edge of the lit area, whose Fourier-shift ringing
    would reach into the region, while the reference's only edge is its own border,
    mirror-padded."""
    obj, ref = obj.astype(np.complex128), ref.astype(np.complex128)
    if region is None:
        region = (slice(4, -4), slice(4, -4))
    o, r = obj[region], ref[region]
    # register a ramp-corrected copy (a ramp estimated before alignment can be far off)
    dy, dx = register(remove_phase_ramp(o, r), r)
    r = _shift(ref, -dy, -dx)[region]
    o = remove_phase_ramp(o, r)
    amp, ref_amp = np.abs(o), np.abs(r)
    amp = amp * (np.sum(amp * ref_amp) / max(np.sum(amp * amp), 1e-30))
    ph, ref_ph = np.angle(o), np.angle(r)
    ring = frc(o, r)
    res = ring["resolution_cycles_per_pixel"]
    out = {
        "amplitude_ssim": ssim(amp, ref_amp), "phase_ssim": ssim(ph, ref_ph),
        "amplitude_psnr": psnr(amp, ref_amp), "phase_psnr": psnr(ph, ref_ph),
        "frc_resolution_cycles_per_pixel": res, "frc_resolution_pixels": 1 / res,
        "registration_shift_px": [dy, dx], "frc": ring,
    }
    if pixel_size_m:
        out["frc_resolution_nm"] = pixel_size_m * 1e9 / res
    return out
