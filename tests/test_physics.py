"""The physics: forward model, loss, sub-pixel placement, overlap constraint, grouping."""

import numpy as np
import pytest
import torch

from ptycho_lib import physics
from ptycho_lib.data import make_groups, tile_groups
from ptycho_lib.scan import split_rows
from ptycho_lib.simulate import probe_from_pupil, pupil
from helpers import fourier_shift
from ptycho_lib.geometry import canvas_geometry, shift_ramps
from ptycho_lib.stitch import Stitcher

N = 32


@pytest.fixture
def probe():
    return torch.from_numpy(physics.scale_probe(probe_from_pupil(pupil(N), N), 1e5))


def test_unit_object_gives_probe_spectrum_and_conserves_energy(probe):
    lam = physics.predicted_counts(probe, torch.ones(N, N, dtype=torch.complex128))
    expected = np.abs(np.fft.fftshift(np.fft.fft2(probe.numpy(), norm="ortho"))) ** 2
    np.testing.assert_allclose(lam.numpy(), expected, rtol=1e-10, atol=1e-8)
    assert float(lam.sum()) == pytest.approx(1e5, rel=1e-9)  # sum |P|^2 = nphotons


def test_zero_frequency_sits_at_the_centre():
    flat = torch.full((N, N), 1 / N, dtype=torch.complex128)  # plane wave, unit energy
    lam = physics.predicted_counts(torch.ones(N, N, dtype=torch.complex128), flat)
    assert np.unravel_index(int(lam.argmax()), lam.shape) == (N // 2, N // 2)


def test_poisson_loss_is_smallest_at_the_true_object(probe):
    rng = np.random.default_rng(0)
    truth = torch.from_numpy((0.8 + 0.2 * rng.random((N, N))) * np.exp(1j * rng.normal(0, 0.5, (N, N))))
    counts = physics.predicted_counts(probe, truth)
    at_truth = float(physics.poisson_nll(counts, counts, 1e5))
    assert at_truth == pytest.approx(0, abs=1e-9)
    for wrong in (truth * 1.1, truth * torch.exp(1j * torch.linspace(0, 1, N))[None, :], truth.conj()):
        assert float(physics.poisson_nll(physics.predicted_counts(probe, wrong), counts, 1e5)) > 1e-4
    # also with noisy counts: the truth beats nearby objects
    noisy = torch.from_numpy(rng.poisson(counts.numpy()).astype(float))
    base = float(physics.poisson_nll(counts, noisy, 1e5))
    for wrong in (truth * 1.05, truth * torch.exp(0.3j * torch.randn(N, N, dtype=torch.float64))):
        assert float(physics.poisson_nll(physics.predicted_counts(probe, wrong), noisy, 1e5)) > base


@pytest.mark.parametrize("shift", [(2.0, -3.0), (-1.25, 0.5), (0.75, 2.5)])
def test_shift_ramps_move_content_by_the_shift(shift):
    """A smooth (well-sampled) spot moved by a sub-pixel shift is the same spot drawn
    at the new place: no blur, whatever the fraction of a pixel."""
    ys, xs = np.mgrid[:N, :N]

    def spot(cy, cx):
        return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * 2.0**2)) * (1 + 1j)

    ramp = shift_ramps(torch.tensor(shift), N, torch.complex128)
    out = torch.fft.ifft2(torch.fft.fft2(torch.from_numpy(spot(14, 16))) * ramp).numpy()
    np.testing.assert_allclose(out, spot(14 + shift[0], 16 + shift[1]), atol=1e-6)


@pytest.mark.parametrize("offset", [(3.0, 5.0), (-4.5, 2.25), (1.5, -6.0)])
def test_overlap_constraint_makes_neighbours_agree(offset):
    """Two patches of one object, offset by +-d/2 from the group centre: after the
    constraint a feature seen by one appears in the other's window at the place the
    offsets say, and identical overlapping content is left unchanged."""
    d = np.array(offset)
    offsets = torch.from_numpy(np.stack([-d / 2, d / 2])[None])  # (1, 2, 2)
    weight = torch.ones(N, N, dtype=torch.float64)
    ys, xs = np.mgrid[:N, :N]
    # a smooth bump at window pixel (16, 16) of member 0 only
    bump = torch.from_numpy(1 + 2 * np.exp(-((ys - 16) ** 2 + (xs - 16) ** 2) / (2 * 1.5**2)))
    a = bump.to(torch.complex128)[None, None]
    b = torch.ones(1, 1, N, N, dtype=torch.complex128)
    out = physics.overlap_constraint(torch.cat([a, b], 1), offsets, weight)
    # member 0's pixel (16,16) lies at window pixel (16,16) - d of member 1
    target = np.array([16, 16]) - d
    w = out[0, 1].real.numpy() - 1
    assert (float((ys * w).sum() / w.sum()), float((xs * w).sum() / w.sum())) == pytest.approx(tuple(target), abs=0.05)
    same = physics.overlap_constraint(torch.ones(1, 2, N, N, dtype=torch.complex128), offsets, weight)
    centre = same[0, :, 8:24, 8:24]
    assert torch.allclose(centre, torch.ones_like(centre))


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
@pytest.mark.parametrize("pos", [(20.0, 30.0), (21.4, 29.3), (19.6, 30.7)])
def test_stitching_places_a_patch_where_its_position_says(method, pos):
    """A patch with a bright smooth spot at its window centre lands with the spot at
    the (y, x) position on the canvas, for positions on both sides of a pixel."""
    ys, xs = np.mgrid[:N, :N]
    spot = 1 + np.exp(-((ys - N / 2) ** 2 + (xs - N / 2) ** 2) / (2 * 1.5**2))
    s = Stitcher((64, 64), np.ones((N, N)), method)
    s.add(spot[None].astype(complex), np.array([pos[0]]), np.array([pos[1]]))
    obj, weight = s.result()
    w = (np.abs(obj) - 1).clip(0) * (weight > 0.5)
    cy, cx = np.mgrid[:64, :64]
    assert (float((cy * w).sum() / w.sum()), float((cx * w).sum() / w.sum())) == pytest.approx(pos, abs=0.05)


def test_fourier_shift_is_exact_for_band_limited_content():
    x = np.arange(N)
    wave = np.exp(2j * np.pi * 3 * x / N)[None, None, :] * np.ones((1, N, 1))
    out = fourier_shift(wave, np.array([0.0]), np.array([0.4]))
    np.testing.assert_allclose(out[0], np.exp(2j * np.pi * 3 * (x - 0.4) / N)[None, :] * np.ones((N, 1)), atol=1e-12)


def test_canvas_fits_windows_that_start_below_zero():
    (h, w), (oy, ox) = canvas_geometry(np.array([5.0, 40.0]), np.array([10.0, 12.0]), 32)
    assert oy >= 6 and ox >= 11 and h >= 12 + oy + 16 and w >= 40 + ox + 16


def test_groups_are_seeds_with_their_nearest_neighbours():
    yy, xx = np.mgrid[0:10, 0:10] * 5.0
    pos = np.stack([yy.ravel(), xx.ravel()], 1)
    groups = make_groups(pos, gridsize=2, neighbours=6, n_groups=150, seed=0)
    assert groups.shape == (150, 4)
    for g in groups:
        d = np.hypot(*(pos[g[1:]] - pos[g[0]]).T)
        sixth = np.sort(np.hypot(*(pos - pos[g[0]]).T))[6]  # [0] is the seed itself
        assert len(set(g)) == 4 and d.max() <= sixth + 1e-9
    assert len(set(groups[:100, 0])) == 100  # every position seeds once before any repeats


def test_validation_groups_hold_every_position_about_once():
    yy, xx = np.mgrid[0:9, 0:11] * 5.0
    pos = np.stack([yy.ravel(), xx.ravel()], 1) + np.random.default_rng(3).normal(0, 1, (99, 2))
    groups = tile_groups(pos, gridsize=2)
    uses = np.bincount(groups.ravel(), minlength=len(pos))
    assert uses.min() == 1 and len(groups) <= 99 // 4 + 3  # all counted, nearly each once
    for g in groups:
        sixteenth = np.sort(np.hypot(*(pos - pos[g[0]]).T))[16]
        assert len(set(g)) == 4 and np.hypot(*(pos[g[1:]] - pos[g[0]]).T).max() <= sixteenth + 1e-9


def test_validation_band_shares_no_position_with_training():
    y = np.repeat(np.arange(10.0), 7)
    train, val = split_rows(y, 0.2)
    assert len(val) == 14 and set(train).isdisjoint(val)
    assert y[val].min() > y[train].max() - 1e-12


def _cut(obj_spec, centre, offsets, n):
    """Windows of a band-limited object (given by its spectrum) centred at centre + offset."""
    h, w = obj_spec.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    out = []
    for dy, dx in offsets:
        ty, tx = centre[0] + dy - n / 2, centre[1] + dx - n / 2
        iy, ix = int(np.floor(ty)), int(np.floor(tx))
        moved = np.fft.ifft2(obj_spec * np.exp(2j * np.pi * (fy * (ty - iy) + fx * (tx - ix))))
        out.append(moved[iy:iy + n, ix:ix + n])
    return np.array(out)


@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_overlap_constraint_keeps_consistent_patches_and_absorbs_phase_offsets(gridsize):
    """Patches cut from one object at sub-pixel offsets are already consistent: the
    constraint leaves them as they are, even when each carries its own global phase
    (which a single pattern cannot determine)."""
    rng = np.random.default_rng(gridsize)
    spec = np.fft.fft2(np.exp(1j * rng.normal(0, 1, (96, 96))))
    fy, fx = np.fft.fftfreq(96)[:, None], np.fft.fftfreq(96)[None, :]
    spec *= np.hypot(fy, fx) < 0.15  # band-limited, so sub-pixel cuts are exact
    c = gridsize**2
    offsets = rng.uniform(-4, 4, (c, 2))
    offsets -= offsets.mean(0)
    patches = _cut(spec, (48.0, 48.0), offsets, N)
    phases = rng.uniform(-np.pi, np.pi, c)
    x = torch.from_numpy(patches * np.exp(1j * phases)[:, None, None])[None]
    weight = torch.from_numpy(np.abs(probe_from_pupil(pupil(N), N)) ** 2)
    out = physics.overlap_constraint(x, torch.from_numpy(offsets)[None], weight)[0].numpy()
    centre = (slice(10, 22), slice(10, 22))  # well lit by every member
    for k in range(c):
        # each output patch is its input patch up to one global phase for the group
        rot = np.vdot(out[k][centre], patches[k][centre])
        rot /= abs(rot)
        err = np.abs(out[k][centre] * rot - patches[k][centre]).max()
        assert err < (1e-6 if c == 1 else 0.01), (k, err)
        if k:
            first = np.vdot(out[0][centre], patches[0][centre])
            assert abs(np.angle(rot / (first / abs(first)))) < 0.05  # the same phase for all


def test_group_phase_offsets_without_alignment_are_averaged_away():
    """Without alignment, members with different global phases partly cancel: the
    constraint then distorts consistent data (why align_phase is the default)."""
    patches = torch.ones(1, 4, N, N, dtype=torch.complex128)
    patches = patches * torch.exp(1j * torch.tensor([0.0, 1.5, -1.5, 3.0]))[None, :, None, None]
    offsets = torch.tensor([[[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]]], dtype=torch.float64)
    weight = torch.ones(N, N, dtype=torch.float64)
    plain = physics.overlap_constraint(patches, offsets, weight, align_phase=False)
    aligned = physics.overlap_constraint(patches, offsets, weight, align_phase=True)
    centre = (slice(None), slice(None), slice(10, 22), slice(10, 22))
    assert float(plain[centre].abs().mean()) < 0.5
    assert torch.allclose(aligned[centre].abs(), torch.ones_like(aligned[centre].abs()), atol=1e-6)


@pytest.mark.parametrize("spread", [0.3, np.pi])
def test_patches_with_any_global_phases_stitch_back_to_the_object(spread):
    """Each patch of a known object gets its own global phase, up to the whole circle
    (a network's patches carry arbitrary ones): aligning them from their overlaps and
    stitching gives the object back, up to one global phase."""
    from helpers import phase_offsets

    rng = np.random.default_rng(4)
    h = w = 96
    yy, xx = np.mgrid[:h, :w]
    obj = (0.8 + 0.2 * np.cos(xx / 5.0)) * np.exp(1j * (0.8 * np.sin(yy / 7.0) + 0.5 * np.cos(xx / 9.0)))
    gy, gx = np.mgrid[24:73:6, 24:73:6]
    y, x = gy.ravel().astype(float), gx.ravel().astype(float)
    patches = np.stack([obj[int(a) - N // 2:int(a) + N // 2, int(b) - N // 2:int(b) + N // 2] for a, b in zip(y, x)])
    patches = patches * np.exp(1j * rng.uniform(-spread, spread, len(y)))[:, None, None]
    probe = probe_from_pupil(pupil(N), N)
    s = Stitcher((h, w), probe)
    s.add(patches * np.exp(1j * phase_offsets(patches, y, x, s.weight))[:, None, None], y, x)
    out, _ = s.result()
    inner = (slice(28, 68), slice(28, 68))
    got = out[inner] * np.exp(-1j * np.angle(np.vdot(obj[inner], out[inner])))
    assert np.abs(got - obj[inner]).max() < 1e-3
