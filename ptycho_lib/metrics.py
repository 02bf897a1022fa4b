"""Image-quality metrics against a reference object (DESIGN.md section 7)."""

from __future__ import annotations

import numpy as np


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


def compare(obj: np.ndarray, ref: np.ndarray) -> dict:
    """Amplitude and phase SSIM / PSNR of obj against ref over the same region, after
    removing the global phase offset and the amplitude scale (least squares)."""
    obj = remove_phase_offset(obj, ref)
    amp, ref_amp = np.abs(obj), np.abs(ref)
    amp = amp * (np.sum(amp * ref_amp) / max(np.sum(amp * amp), 1e-30))
    ph, ref_ph = np.angle(obj), np.angle(ref)
    return {
        "amplitude_ssim": ssim(amp, ref_amp), "phase_ssim": ssim(ph, ref_ph),
        "amplitude_psnr": psnr(amp, ref_amp), "phase_psnr": psnr(ph, ref_ph),
    }
