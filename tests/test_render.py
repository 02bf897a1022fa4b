"""The figures: the phase colour scale follows the render settings."""

import numpy as np

from ptycho_lib import render as render_module


def test_phase_limit_fixes_the_phase_colour_scale(tmp_path, monkeypatch):
    made = []
    real = render_module.plt.subplots
    monkeypatch.setattr(render_module.plt, "subplots", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    ramp = np.outer(np.linspace(-1, 1, 40), np.ones(40))
    obj = np.exp(0.2j * ramp)  # a phase of +-0.2 rad
    region = (slice(0, 40), slice(0, 40))
    render_module.render(obj, region, "from the image", tmp_path / "auto.png")
    render_module.render(obj, region, "fixed", tmp_path / "fixed.png", phase_limit=1.5)
    auto, fixed = (axes[1].images[0].get_clim() for _, axes in made)
    assert 0.15 < auto[1] < 0.25 and auto[0] == -auto[1]
    assert fixed == (-1.5, 1.5)


def test_an_frc_that_never_falls_below_the_threshold_gives_no_resolution(tmp_path):
    """metrics.frc reports 0.5 cycles/px (Nyquist) for a curve that never crosses: the
    figure says so instead of printing 0.50 as if it were a resolution."""
    from ptycho_lib.metrics import frc

    rng = np.random.default_rng(0)
    img = rng.standard_normal((64, 64))
    same, noisy = frc(img, img), frc(img, img + 3 * rng.standard_normal((64, 64)))
    assert same["resolution_cycles_per_pixel"] == 0.5 and noisy["resolution_cycles_per_pixel"] < 0.5
    assert render_module.resolution_text(same["resolution_cycles_per_pixel"]) == "beyond the measured band"
    assert render_module.resolution_text(noisy["resolution_cycles_per_pixel"]) == \
        f"{noisy['resolution_cycles_per_pixel']:.2f}"
    table = {"a": {"frc_resolution_cycles_per_pixel": 0.5, "amplitude_psnr": 20.0},
             "b": {"frc_resolution_cycles_per_pixel": noisy["resolution_cycles_per_pixel"], "amplitude_psnr": 9.0}}
    render_module.plot_frc({"a": same, "b": noisy}, table, "t", tmp_path / "frc.png")
    assert (tmp_path / "frc.png").read_bytes()[:4] == b"\x89PNG"


def test_side_by_side_rows_share_one_amplitude_and_one_phase_scale(tmp_path, monkeypatch):
    """Three reconstructions of different contrast: every row's amplitude panel has the
    same colour limits (spanning the brightest and the darkest), and so has the phase."""
    made = []
    real = render_module.plt.subplots
    monkeypatch.setattr(render_module.plt, "subplots", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    ramp = np.outer(np.linspace(-1, 1, 40), np.ones(40))
    region = (slice(0, 40), slice(0, 40))
    rows = [(f"x{k}", k * (1 + 0.1 * ramp) * np.exp(0.1j * k * ramp), region) for k in (1, 2, 3)]
    render_module.render_side_by_side(rows, "three", tmp_path / "side.png")
    _, axes = made[0]
    amp = {row[0].images[0].get_clim() for row in axes}
    phase = {row[1].images[0].get_clim() for row in axes}
    assert len(amp) == 1 and len(phase) == 1 and len(axes) == 3
    (lo, hi), = amp
    assert lo < 1.0 and hi > 3.0  # the darkest row's and the brightest row's values are on one scale
    (plo, phi), = phase
    assert plo == -phi and 0.25 < phi < 0.35
    assert (tmp_path / "side.png").read_bytes()[:4] == b"\x89PNG"
