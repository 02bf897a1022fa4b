"""Figures a user looks at: amplitude | phase of a reconstruction, and the loss curve."""

from __future__ import annotations

import csv

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.offsetbox import AnchoredText
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from .metrics import remove_phase_offset

matplotlib.use("Agg")  # files only, no display (pyplot picks its backend at the first figure)

UNITS = ((1e-3, "mm"), (1e-6, "µm"), (1e-9, "nm"), (1e-12, "pm"))


def scale_bar_length(width_m: float) -> tuple[float, str]:
    """A round length (1, 2 or 5 x 10^k m) near a fifth of `width_m`, and its label."""
    target = width_m / 5
    exp = np.floor(np.log10(target))
    length = max(m for m in (1, 2, 5) if m * 10**exp <= target) * 10**exp
    unit, name = next(((u, n) for u, n in UNITS if length >= u), UNITS[-1])
    return float(length), f"{length / unit:.3g} {name}"


def _phase_limit(phases, phase_limit: float | None) -> float:
    """The phase colour scale: given, else from the images (a full cycle only when the
    phase wraps)."""
    if phase_limit:
        return phase_limit
    span = max(float(np.percentile(np.abs(p), 99.5)) for p in phases)
    return np.pi if span > 2.5 else max(span, 1e-3)


def _frame(shape, pixel_size: float | None) -> tuple[float, str, float]:
    """Axis units of an image of `shape` pixels: (pixel step in axis units, axis unit
    name, metres per axis unit); object pixels when the pixel size is unknown."""
    if not pixel_size:
        return 1.0, "object pixels", 0.0
    unit, name = next(((u, n) for u, n in UNITS if shape[1] * pixel_size >= u), UNITS[-1])
    return pixel_size / unit, name, unit


def _panels(fig, axes, panels, pixel_size: float | None) -> float:
    """Images (image, imshow keywords, title) on `axes`, each with a colour bar, in
    physical units with a scale bar when the pixel size is known; returns the pixel
    step in axis units."""
    h, w = panels[0][0].shape
    step, unit_name, unit = _frame((h, w), pixel_size)
    extent = (-0.5 * step, (w - 0.5) * step, (h - 0.5) * step, -0.5 * step)
    for ax, (img, kw, name) in zip(axes, panels):
        im = ax.imshow(img, interpolation="nearest", extent=extent, **kw)
        ax.set_title(name)
        ax.set_xlabel(f"x ({unit_name})")
        ax.set_ylabel(f"y ({unit_name})")
        fig.colorbar(im, ax=ax, shrink=0.85)
        if pixel_size:
            length, text = scale_bar_length(w * pixel_size)
            _scale_bar(ax, length / unit, text, max(h * step / 80, 0.5 * step))
    return step


def _draw(fig, axes, amp, phase, lim: float, pixel_size: float | None, amp_range=(None, None), label="") -> float:
    """Amplitude (grey) and phase panels of one reconstruction on a row of two axes."""
    return _panels(fig, axes, [
        (amp, dict(cmap="gray", vmin=amp_range[0], vmax=amp_range[1]), label + "amplitude"),
        # a cyclic map only for a full cycle: on a partial range its two light ends
        # would make +lim and -lim look alike
        (phase, dict(cmap="twilight" if lim == np.pi else "RdBu_r", vmin=-lim, vmax=lim), label + "phase (rad)"),
    ], pixel_size)


def _scale_bar(ax, length: float, text: str, thickness: float) -> None:
    """A white bar and label on a dark translucent box: readable on the dark and the
    light parts of any colour map."""
    bar = AnchoredSizeBar(ax.transData, length, text, "lower right", pad=0.3, borderpad=0.5, color="white",
                          frameon=True, size_vertical=thickness)
    bar.patch.set(facecolor="black", alpha=0.55, edgecolor="none")
    ax.add_artist(bar)


def render(obj: np.ndarray, region: tuple[slice, slice], title: str, path, dpi: int = 120,
           pixel_size: float | None = None, positions: tuple[np.ndarray, np.ndarray] | None = None,
           phase_limit: float | None = None) -> None:
    """Amplitude in grey and phase (a diverging map; a cyclic one when it wraps) over
    the scanned region, with the global phase offset removed and colour bars; written
    to `path` (PNG). With the pixel size (m) a scale bar is drawn; with positions (x, y
    in pixels of `obj`) the scan points are overlaid on the amplitude; `phase_limit`
    (radians) fixes the phase colour scale instead of taking it from the image."""
    crop = remove_phase_offset(obj[region])
    amp, phase = np.abs(crop), np.angle(crop)
    h, w = amp.shape
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6 * h / w + 0.8), constrained_layout=True)
    step = _draw(fig, axes, amp, phase, _phase_limit([phase], phase_limit), pixel_size)
    if positions is not None:
        x, y = positions
        axes[0].plot((x - region[1].start) * step, (y - region[0].start) * step, ".", color="tab:orange", ms=2,
                     alpha=0.7)
        axes[0].set_xlim(-0.5 * step, (w - 0.5) * step)
        axes[0].set_ylim((h - 0.5) * step, -0.5 * step)
        note = AnchoredText(f"{len(x)} scan positions", "upper right", frameon=True,
                            prop=dict(color="tab:orange", size=8))
        note.patch.set(facecolor="black", alpha=0.55, edgecolor="none")
        axes[0].add_artist(note)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)


def render_side_by_side(rows: list[tuple[str, np.ndarray, tuple[slice, slice]]], title: str, path, dpi: int = 120,
                        pixel_size: float | None = None, phase_limit: float | None = None) -> None:
    """Several reconstructions of one scan (label, object, scanned region), a row each,
    with one amplitude and one phase colour scale for all, so that they compare by eye."""
    crops = [remove_phase_offset(obj[region]) for _, obj, region in rows]
    h, w = min(c.shape[0] for c in crops), min(c.shape[1] for c in crops)
    amps = [np.abs(c[:h, :w]) for c in crops]
    phases = [np.angle(c[:h, :w]) for c in crops]
    amp_range = (min(float(np.percentile(a, 0.5)) for a in amps), max(float(np.percentile(a, 99.5)) for a in amps))
    lim = _phase_limit(phases, phase_limit)
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, len(rows) * 4.6 * h / w + 0.8), squeeze=False,
                             constrained_layout=True)
    for row, (label, _, _), amp, phase in zip(axes, rows, amps, phases):
        _draw(fig, row, amp, phase, lim, pixel_size, amp_range, f"{label}: ")
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)


def render_probe(probe: np.ndarray, title: str, path, dpi: int = 120, pixel_size: float | None = None) -> None:
    """The probe's amplitude and phase (the phase shown where the amplitude exceeds 5 %
    of its peak; grey elsewhere, where it means nothing), and its far-field intensity
    on a log scale: what the patterns are made of."""
    amp = np.abs(probe)
    far = np.abs(np.fft.fftshift(np.fft.fft2(probe, norm="ortho"))) ** 2
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.4), constrained_layout=True)
    shown = np.ma.masked_where(amp < 0.05 * amp.max(), np.angle(probe))
    cyclic = plt.get_cmap("twilight").with_extremes(bad="0.75")
    _panels(fig, axes, [(amp, dict(cmap="gray"), "amplitude"),
                        (shown, dict(cmap=cyclic, vmin=-np.pi, vmax=np.pi), "phase (rad)")], pixel_size)
    im = axes[2].imshow(np.log10(far / far.max() + 1e-12), cmap="magma", vmin=-6, vmax=0, interpolation="nearest")
    axes[2].set_title("far field, log10 of intensity / peak")
    axes[2].set_xlabel("detector column")
    axes[2].set_ylabel("detector row")
    fig.colorbar(im, ax=axes[2], shrink=0.85)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)


def resolution_text(cycles_per_pixel: float, short: bool = False) -> str:
    """An FRC resolution as text; metrics.frc gives 0.5 (Nyquist) when the curve never
    falls below the threshold, which is no measured resolution (`short`: for a table)."""
    if cycles_per_pixel < 0.5:
        return f"{cycles_per_pixel:.2f}"
    return "beyond band" if short else "beyond the measured band"


def plot_frc(curves: dict, table: dict, title: str, path, dpi: int = 110) -> None:
    """FRC curve of each method (from metrics.frc) with the 1/2-bit threshold, and the
    methods' scores as a table beside it; written to `path` (PNG)."""
    fig, (ax, tab) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(1, 1.2), constrained_layout=True)
    threshold = None
    for name, c in curves.items():
        resolution = resolution_text(table[name]["frc_resolution_cycles_per_pixel"])
        ax.plot(c["frequency"], c["frc"], label=f"{name} ({resolution})")
        threshold = c
    if threshold is not None:
        ax.plot(threshold["frequency"], threshold["threshold_half_bit"], "k:", label="1/2-bit threshold")
    else:
        ax.text(0.5, 0.5, "no reference object:\nthe figures beside need none", ha="center", va="center",
                transform=ax.transAxes)
    ax.set(xlabel="spatial frequency (cycles/pixel)", ylabel="FRC against the reference", ylim=(-0.05, 1.02),
           xlim=(0, 0.5), title="Fourier ring correlation")
    if curves:
        ax.legend(fontsize=8)
    columns = [("amplitude_ssim", "amp.\nSSIM"), ("phase_ssim", "phase\nSSIM"), ("amplitude_psnr", "amp.\nPSNR (dB)"),
               ("phase_psnr", "phase\nPSNR (dB)"), ("frc_resolution_cycles_per_pixel", "FRC res.\n(cyc/px)"),
               ("nll_per_photon", "NLL per\nphoton"), ("heldout_nll_per_photon", "held-out\nNLL"),
               ("stage_wall_s", "wall\n(s)")]
    columns = [(k, label) for k, label in columns if any(k in row for row in table.values())]
    cells = [[_cell(k, row) for k, _ in columns] for row in table.values()]
    tab.axis("off")
    t = tab.table(cellText=cells, rowLabels=list(table), colLabels=[label for _, label in columns], loc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8.5)
    t.auto_set_column_width(range(len(columns)))
    t.scale(1, 2.6)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)


def _cell(key: str, row: dict) -> str:
    """A score as the metrics table shows it."""
    if key not in row:
        return "–"
    value = row[key]
    if "nll" in key:
        return f"{value:.4f}"
    if "frc" in key:
        return resolution_text(value, short=True)
    return f"{value:.3f}" if "ssim" in key else f"{value:.1f}"


def read_metrics(path) -> dict[str, np.ndarray]:
    """metrics.csv (epoch, step, lr, train_loss, val_loss) as float columns, blank = NaN."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def loss_curve(metrics: dict[str, np.ndarray], title: str, path, dpi: int = 120) -> None:
    """Training and validation loss per epoch (log scale when all positive), PNG."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    epoch = metrics.get("epoch", np.zeros(0)) + 1
    values = []
    for key, label in (("train_loss", "training"), ("val_loss", "validation (held-out rows)")):
        if key in metrics and np.any(np.isfinite(metrics[key])):
            ok = np.isfinite(metrics[key])
            ax.plot(epoch[ok], metrics[key][ok], "o-", ms=3, label=label)
            values.append(metrics[key][ok])
    if values and all(np.all(v > 0) for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if values:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no losses recorded", ha="center", transform=ax.transAxes)
    ax.set_title(title)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)
