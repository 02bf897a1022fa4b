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


def plot_frc(curves: dict, table: dict, title: str, path, dpi: int = 110) -> None:
    """FRC curve of each method (from metrics.frc) with the 1/2-bit threshold, and the
    methods' scores as a table beside it; written to `path` (PNG)."""
    fig, (ax, tab) = plt.subplots(1, 2, figsize=(11, 3.8), width_ratios=(1, 1.1), constrained_layout=True)
    threshold = None
    for name, c in curves.items():
        ax.plot(c["frequency"], c["frc"], label=f"{name} ({table[name]['frc_resolution_cycles_per_pixel']:.2f})")
        threshold = c
    if threshold is not None:
        ax.plot(threshold["frequency"], threshold["threshold_half_bit"], "k:", label="1/2-bit threshold")
    ax.set(xlabel="spatial frequency (cycles/pixel)", ylabel="FRC against the reference", ylim=(-0.05, 1.02),
           xlim=(0, 0.5), title="Fourier ring correlation")
    ax.legend(fontsize=8)
    columns = [("amplitude_ssim", "amp. SSIM"), ("phase_ssim", "phase SSIM"), ("amplitude_psnr", "amp. PSNR"),
               ("phase_psnr", "phase PSNR"), ("frc_resolution_cycles_per_pixel", "FRC res.\n(cyc/px)"),
               ("stage_wall_s", "wall (s)")]
    columns = [(k, label) for k, label in columns if all(k in row for row in table.values())]
    cells = [[f"{row[k]:.3f}" if "ssim" in k or "frc" in k else f"{row[k]:.1f}" for k, _ in columns]
             for row in table.values()]
    tab.axis("off")
    t = tab.table(cellText=cells, rowLabels=list(table), colLabels=[label for _, label in columns], loc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(9)
    t.scale(1, 2.2)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)
