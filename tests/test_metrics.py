"""Metrics on cases with known answers."""

import numpy as np
import pytest

from ptycho_lib.metrics import compare, frc, psnr, register, remove_phase_ramp, ssim
from ptycho_lib.simulate import make_object


@pytest.fixture(scope="module")
def obj():
    return make_object((192, 192), seed=3, upsample=2)[::2, ::2][20:84, 20:100]  # 64 x 80 complex


def test_identical_images_score_perfectly(obj):
    r = compare(obj, obj)
    assert r["amplitude_ssim"] == pytest.approx(1) and r["phase_ssim"] == pytest.approx(1)
    assert r["amplitude_psnr"] > 100 and r["phase_psnr"] > 100
    assert r["frc_resolution_cycles_per_pixel"] == 0.5  # never crosses: Nyquist
    assert np.allclose(r["registration_shift_px"], 0, atol=1e-6)


@pytest.mark.parametrize("shift", [(1.3, -2.6), (-0.4, 0.7)])
def test_known_shift_is_found_and_removed(shift):
    big = make_object((320, 320), seed=3, upsample=2)[::2, ::2]
    fy = np.fft.fftfreq(big.shape[0])[:, None]
    fx = np.fft.fftfreq(big.shape[1])[None, :]
    # moved(r) = big(r + shift): moving it by +shift puts it back. The shift is
    # periodic, so the region stays far from the wrap-around seam.
    moved = np.fft.ifft2(np.fft.fft2(big) * np.exp(2j * np.pi * (fy * shift[0] + fx * shift[1])))
    region = (slice(48, -48), slice(40, -40))
    assert register(moved[region], big[region]) == pytest.approx(shift, abs=0.02)
    r = compare(moved, big, region)
    assert r["registration_shift_px"] == pytest.approx(shift, abs=0.02)
    assert r["phase_ssim"] > 0.99 and r["amplitude_ssim"] > 0.99


def test_phase_ramp_offset_and_scale_are_removed(obj):
    yy, xx = np.mgrid[: obj.shape[0], : obj.shape[1]]
    ramped = 0.7 * obj * np.exp(1j * (0.05 * yy - 0.08 * xx + 2.0))
    np.testing.assert_allclose(remove_phase_ramp(ramped, obj), 0.7 * obj, atol=1e-9)
    r = compare(ramped, obj)
    assert r["amplitude_ssim"] == pytest.approx(1, abs=1e-6) and r["phase_ssim"] == pytest.approx(1, abs=1e-6)


def test_white_noise_scores_poorly(obj):
    rng = np.random.default_rng(0)
    noise = rng.normal(1, 0.2, obj.shape) * np.exp(1j * rng.normal(0, 0.5, obj.shape))
    r = compare(noise, obj)
    assert r["amplitude_ssim"] < 0.2 and r["phase_ssim"] < 0.2
    assert r["frc_resolution_cycles_per_pixel"] < 0.1


def test_frc_resolution_tracks_blur(obj):
    fy = np.fft.fftfreq(obj.shape[0])[:, None]
    fx = np.fft.fftfreq(obj.shape[1])[None, :]
    res = []
    for cutoff in (0.35, 0.2, 0.1):  # keep frequencies below the cutoff only
        low = np.fft.ifft2(np.fft.fft2(obj) * (np.hypot(fy, fx) < cutoff))
        res.append(frc(low + 0.01 * np.random.default_rng(1).normal(size=obj.shape), obj)["resolution_cycles_per_pixel"])
    assert res[0] > res[1] > res[2] and res[2] == pytest.approx(0.1, abs=0.03)


def test_psnr_uses_the_reference_range():
    ref = np.linspace(0, 2, 100)
    assert psnr(ref + 0.02, ref) == pytest.approx(10 * np.log10(4 / 0.0004))
    assert ssim(ref[None].repeat(20, 0), ref[None].repeat(20, 0)) == pytest.approx(1)
