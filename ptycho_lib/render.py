"""Amplitude | phase figure of a reconstruction."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import remove_phase_offset  # noqa: E402


def render(obj: np.ndarray, region: tuple[slice, slice], title: str, path, dpi: int = 120) -> None:
    """Amplitude in grey and phase in a cyclic map over the scanned region, with the
    global phase offset removed and colour bars; written to `path` (PNG)."""
    crop = remove_phase_offset(obj[region])
    amp, phase = np.abs(crop), np.angle(crop)
    span = float(np.percentile(np.abs(phase), 99.5))
    lim = np.pi if span > 2.5 else max(span, 1e-3)  # full cycle only when the phase wraps
    h, w = amp.shape
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6 * h / w + 0.8), constrained_layout=True)
    for ax, img, kw, label in (
        (axes[0], amp, dict(cmap="gray"), "amplitude"),
        (axes[1], phase, dict(cmap="twilight", vmin=-lim, vmax=lim), "phase (rad)"),
    ):
        im = ax.imshow(img, interpolation="nearest", **kw)
        ax.set_title(label)
        ax.set_xlabel("x (object pixels)")
        ax.set_ylabel("y (object pixels)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)
