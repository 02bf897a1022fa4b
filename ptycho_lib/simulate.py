"""Simulated fly-scan ptychography data, used for the shipped fixtures and the tests.

To avoid the inverse crime the simulator does not share the reconstruction's
discretisation: the object lives on a grid `upsample` times finer than the object
pixels, the probe is band-limited (defined by its pupil), sub-pixel positions are
applied as exact Fourier shifts of the probe, and the far field is the central N x N of
the fine-grid FFT. The ground truth handed out is the fine object averaged
over each object pixel (centred on the positions' frame). The reconstruction
instead cuts and stitches windows on the coarse grid with its own interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ScanSpec:
    n: int = 64  # pattern size N (detector pixels = object-pixel window)
    cols: int = 27  # positions per fly row
    rows: int = 26  # number of rows
    step: float = 8.0  # nominal distance between neighbours (object pixels)
    jitter: float = 0.35  # std of position noise (object pixels)
    nphotons: float = 3e5  # incident photons per pattern (sum |P|^2)
    upsample: int = 2  # fine-grid factor of the simulation
    seed: int = 1
    object_seed: int = 7  # object features; a second scan uses another one


def pupil(n: int, outer: float = 0.22, stop: float = 0.4, defocus: float = 8.0,
          astig: float = 2.0, coma: float = 1.5) -> np.ndarray:
    """Zone-plate-like pupil on an n x n frequency grid (DC at [0, 0]).

    `outer` is the aperture radius as a fraction of n, `stop` the central stop as a
    fraction of the aperture; defocus / astigmatism / coma are the aberration
    amplitudes in radians at the aperture edge.
    """
    f = np.fft.fftfreq(n)
    qy, qx = np.meshgrid(f, f, indexing="ij")
    rho = np.hypot(qx, qy) / outer
    theta = np.arctan2(qy, qx)
    # soft edges: a real zone plate has finite outermost zones
    edge = 0.5 * (1 + np.tanh((1 - rho) * 12)) * 0.5 * (1 + np.tanh((rho - stop) * 12))
    aberr = defocus * rho**2 + astig * rho**2 * np.cos(2 * theta) + coma * rho**3 * np.cos(theta - 0.6)
    return edge * np.exp(1j * aberr)


def probe_from_pupil(pup: np.ndarray, size: int, shift=(0.0, 0.0)) -> np.ndarray:
    """Probe on a size x size real-space grid (size >= pupil size), centred at size/2
    plus `shift` (row, col) in pixels of that grid; band-limited, so shifts are exact."""
    n = pup.shape[0]
    spec = np.zeros((size, size), complex)
    h = n // 2
    # place the pupil's frequencies into the larger grid (zero-padding = interpolation)
    spec[:h, :h] = pup[:h, :h]
    spec[:h, -h:] = pup[:h, -h:]
    spec[-h:, :h] = pup[-h:, :h]
    spec[-h:, -h:] = pup[-h:, -h:]
    f = np.fft.fftfreq(size)
    qy, qx = np.meshgrid(f, f, indexing="ij")
    c = size / 2 + np.asarray(shift, float)
    spec = spec * np.exp(-2j * np.pi * (qy * c[0] + qx * c[1]))
    return np.fft.ifft2(spec) * size


def _smooth(rng, shape, sigma):
    """Gaussian-filtered white noise, unit std (FFT filtering, periodic)."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    g = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    out = np.fft.ifft2(np.fft.fft2(noise) * g).real
    return out / out.std()


def _soft(d):
    """Anti-aliased inside-indicator for a signed distance d (pixels, < 0 inside)."""
    return 0.5 * (1 - np.tanh(d / 0.7))


def make_object(shape, seed: int, upsample: int) -> np.ndarray:
    """Complex transmission on the fine grid with features at several scales.

    Amplitude and phase are built from different feature sets so that a method that
    mixes them up shows it: smooth multi-scale texture, disks of many sizes, line
    pairs of decreasing pitch and a Siemens-star sector.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    u = upsample
    yy, xx = np.mgrid[0:h, 0:w] / u  # coordinates in object pixels
    tex = lambda s: _smooth(rng, shape, s * u)  # noqa: E731

    amp_feat = 0.08 * tex(1.5) + 0.15 * tex(5) + 0.25 * tex(20)
    phase = 0.08 * tex(2) + 0.15 * tex(8) + 0.35 * tex(30)
    H, W = h / u, w / u
    for _ in range(40):  # disks of 1.5 .. 18 px radius
        r = np.exp(rng.uniform(np.log(1.5), np.log(18)))
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        disk = _soft(np.hypot(yy - cy, xx - cx) * u - r * u)
        if rng.random() < 0.5:
            amp_feat += rng.uniform(0.2, 0.6) * disk
        else:
            phase += rng.choice([-1, 1]) * rng.uniform(0.4, 1.0) * disk
    # line pairs (phase bars) of pitch 2..12 px in a band across the middle
    for k, pitch in enumerate([12, 8, 6, 4, 3, 2]):
        x0, y0 = W * (0.12 + 0.13 * k), H * 0.45
        inside = _soft((np.abs(xx - x0 - 3 * pitch) - 3 * pitch) * u) * _soft((np.abs(yy - y0) - 14) * u)
        bars = 0.5 * (1 + np.sign(np.sin(np.pi * (xx - x0) / pitch * 2)))
        phase += 0.8 * inside * bars
    # Siemens-star in amplitude
    cy, cx = H * 0.72, W * 0.3
    rr = np.hypot(yy - cy, xx - cx)
    star = (np.sin(16 * np.arctan2(yy - cy, xx - cx)) > 0) * _soft((rr - 26) * u)
    amp_feat += 0.5 * star
    amp = 1.0 - 0.3 * np.clip(amp_feat - amp_feat.min(), 0, None) / np.ptp(amp_feat)
    phase = phase - phase.mean()
    phase *= 1.2 / np.abs(phase).max()
    return amp * np.exp(1j * phase)


def downsample(fine: np.ndarray, u: int) -> np.ndarray:
    """The fine object averaged over each object pixel, with object pixel i centred on
    fine pixel u*i (the frame the positions use): a centred box filter of width u (half
    weights at the ends for even u), then every u-th sample."""
    k = np.ones(u) / u if u % 2 else np.r_[0.5, np.ones(u - 1), 0.5] / u
    half = len(k) // 2
    out = fine
    for axis in (0, 1):
        out = sum(w * np.roll(out, half - j, axis) for j, w in enumerate(k))
    return out[::u, ::u]


def fly_scan(spec: ScanSpec, rng) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Positions of a fly scan: continuous left-to-right rows at constant nominal
    speed with slow velocity drift and encoder jitter; returns x, y (object pixels)
    and the object shape that holds every window with a small margin."""
    margin = spec.n / 2 + 4
    xs, ys = [], []
    for r in range(spec.rows):
        drift = np.cumsum(rng.normal(0, 0.05, spec.cols))  # velocity wander (px)
        x = np.arange(spec.cols) * spec.step + drift + rng.normal(0, spec.jitter, spec.cols)
        y = r * spec.step + rng.normal(0, spec.jitter, spec.cols) + 0.02 * x  # slight tilt
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    x += margin - x.min()
    y += margin - y.min()
    shape = (int(np.ceil(y.max() + margin)), int(np.ceil(x.max() + margin)))
    return x, y, shape


def simulate(spec: ScanSpec, obj_fine: np.ndarray | None = None) -> dict:
    """Simulate a scan. Returns legacy-style arrays: counts stack (N, N, M) uint16 under
    `diff3d`, complex128 probe and object, float64 coordinates."""
    rng = np.random.default_rng(spec.seed)
    n, u = spec.n, spec.upsample
    x, y, shape = fly_scan(spec, rng)
    if obj_fine is None:
        obj_fine = make_object((shape[0] * u, shape[1] * u), spec.object_seed, u)
    pup = pupil(n)
    probe = probe_from_pupil(pup, n)
    scale = np.sqrt(spec.nphotons / np.sum(np.abs(probe) ** 2))
    probe *= scale
    m = len(x)
    counts = np.empty((n, n, m), np.uint16)
    big = n * u
    lo = (big - n) // 2
    for j in range(m):
        # window on the fine grid: top-left corner at floor(u*pos) - big/2
        fy, fx = u * y[j], u * x[j]
        iy, ix = int(np.floor(fy)), int(np.floor(fx))
        # same continuous probe sampled u times finer (ifft2 normalisation differs by u)
        p = probe_from_pupil(pup, big, shift=(fy - iy, fx - ix)) * (scale * u)
        win = obj_fine[iy - big // 2: iy + big // 2, ix - big // 2: ix + big // 2]
        # an ortho FFT on the u-times finer grid is u times the coarse-grid one
        far = np.fft.fftshift(np.fft.fft2(p * win, norm="ortho")) / u
        # central N x N of the fine-grid spectrum = the detector (see module doc)
        intensity = np.abs(far[lo:lo + n, lo:lo + n]) ** 2
        c = rng.poisson(intensity)
        if c.max() > np.iinfo(np.uint16).max:
            raise ValueError("counts overflow uint16; lower nphotons")
        counts[:, :, j] = c
    obj = downsample(obj_fine, u)
    return {
        "diff3d": counts,
        "probeGuess": probe.astype(np.complex128),
        "objectGuess": obj.astype(np.complex128),
        "xcoords": x.astype(np.float64),
        "ycoords": y.astype(np.float64),
        "scan_index": np.arange(m, dtype=np.int64),
    }
