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
