"""Dose and overlap study: the three methods, recon (the network), baseline (ePIE from a
flat object) and refined (the network refined by ePIE), on the same object simulated at
doses from 1e3 to 1e7 photons per pattern and two overlaps.

    python benchmarks/dose_study.py --out results/dose_study            # full size
    python benchmarks/dose_study.py --out /tmp/dose --quick             # minutes

`refined` is the pipeline's refined stage: the network's reconstruction refined with a
weakening pull toward it, the pull and the passes (up to --refine-iterations) chosen
by the held-out patterns' Poisson NLL (its `passes`, `pull`,
`heldout_nll_per_photon`, the large-scale fit's `large_scale_passes` and the chosen
`blur_px` are in the table); `refined_fixed` runs --refine-iterations
plain passes from the network's reconstruction, as the stage once did. Every method
also gets `nll_per_photon`, the Poisson NLL of all patterns under its object (no ground
truth needed; the solvers fitted these patterns, so it favours them at low dose), and
`speedup`, the baseline's wall time over the method's.

The network is trained with the pipeline's defaults (groups of 4, gridsize 2);
--gridsize changes the group size, one value for every step or one per step
(`--steps 14 --gridsize 3`: groups of 9 at the lower overlap).
Writes dose_study.json, dose_study.csv and dose_study.png (phase SSIM and FRC
resolution against dose) into --out and prints the table with wall times. Every
method runs in this process, one after the other, on the same data. --networks DIR
keeps each case's trained network and reuses it in later runs (to compare refinements
on the same networks without training again).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_lib.bundle import export_checkpoint, load_network
from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, SolverConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import scanned_region
from ptycho_lib.iterative import Solver, pattern_nll, refine, spread_subset
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import ScanSpec, simulate
from ptycho_lib.training import train


def case_name(spec: ScanSpec, gridsize: int, epochs: int, monitor: str) -> str:
    """The folder under --networks that keeps this case's network."""
    return f"step{spec.step:g}_dose{spec.nphotons:g}_{spec.rows}x{spec.cols}_gridsize{gridsize}_{epochs}{monitor}"


def simulated_scan(spec: ScanSpec):
    """The case's scan, its scanned region and its probe on the photon scale."""
    scan = scan_from(canonicalise(simulate(spec), f"dose{spec.nphotons:g}.npz"))
    return scan, scanned_region(scan.x, scan.y), scale_probe(scan.probe.astype(np.complex128), scan.nphotons)


def run_case(spec: ScanSpec, gridsize: int, epochs: int, monitor: str, settings: SolverConfig, work: Path,
             on_check=None, infer: InferConfig = InferConfig()) -> tuple[dict, np.ndarray]:
    """The methods' scores on one simulated scan, and the refinement's curve (passes,
    pull, held-out NLL per check). on_check(solver, scan, region) is called at each of
    the refinement's checks (benchmarks/refine_paths.py scores the path with it)."""
    scan, region, probe = simulated_scan(spec)
    row = {}

    bundle = work / "wts.h5.zip"
    t = time.perf_counter()
    if not bundle.exists():  # else a network kept by an earlier run (--networks)
        ckpt = train(scan, None, work, DataConfig(gridsize=gridsize), ModelConfig(),
                     TrainConfig(max_epochs=epochs, checkpoint_monitor=monitor), ExecConfig(quiet=True))
        (work / "train_s").write_text(f"{time.perf_counter() - t}")
        export_checkpoint(ckpt, bundle)  # last: a bundle found means a finished case
    train_s = float((work / "train_s").read_text())
    net, _ = load_network(bundle, n=scan.n)
    t = time.perf_counter()
    held = spread_subset(len(scan.x), settings.holdout_fraction)
    rec = reconstruct(net, scan, infer, "cpu", unseen=held)  # as the recon stage makes it
    pinn = rec.object
    row["recon"] = {**_scores(pinn, scan, probe, region), "wall_s": time.perf_counter() - t, "train_s": train_s}

    t = time.perf_counter()
    flat = np.ones(scan.obj.shape)
    base = Solver(scan.amplitude, probe, scan.y, scan.x, flat, settings).run()
    row["baseline"] = {**_scores(base, scan, probe, region), "wall_s": time.perf_counter() - t}

    t = time.perf_counter()
    start = np.where(np.abs(pinn) > 0, pinn, 1)
    ref = Solver(scan.amplitude, probe, scan.y, scan.x, start, settings.refining()).run(settings.refine_iterations)
    row["refined_fixed"] = {**_scores(ref, scan, probe, region), "wall_s": time.perf_counter() - t,
                            "passes": settings.refine_iterations}

    t = time.perf_counter()
    watch = (lambda solver: on_check(solver, scan, region)) if on_check else None
    unseen = rec.extra["object_unseen"]
    solver, curve = refine(scan.amplitude, probe, scan.y, scan.x, start, settings, settings.refine_iterations, watch,
                           fair_start=np.where(np.abs(unseen) > 0, unseen, 1))
    seconds = time.perf_counter() - t
    best = int(np.argmin(curve[:, 2]))
    row["refined"] = {**_scores(solver.obj.numpy(), scan, probe, region), "wall_s": seconds,
                      "passes": solver.passes, "pull": float(curve[best, 1]) if best else "start",
                      "heldout_nll_per_photon": float(curve[best, 2]),
                      "large_scale_passes": _chosen(solver.smooth_curve),
                      "blur_px": _chosen(solver.resolution_curve)}
    for method in row:
        row[method]["speedup"] = row["baseline"]["wall_s"] / row[method]["wall_s"]
    return row, curve


def _chosen(curve):
    """The first column of a (value, NLL) curve's lowest row: the passes of the
    large-scale fit, or the blur, the refinement kept (0 when off)."""
    return min(curve, key=lambda c: c[1])[0] if curve else 0


def _scores(obj, scan, probe, region):
    s = compare(obj, scan.obj, region)
    return {**{k: s[k] for k in ("amplitude_ssim", "phase_ssim", "frc_resolution_cycles_per_pixel")},
            "nll_per_photon": pattern_nll(obj, probe, scan.amplitude, scan.y, scan.x)}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for step in sorted({r["step"] for r in rows}):
        for method, style in (("recon", "o-"), ("baseline", "s--"), ("refined", "^:"), ("refined_fixed", "v:")):
            sel = [r for r in rows if r["step"] == step and r["method"] == method]
            dose = [r["nphotons"] for r in sel]
            label = f"{method}, step {step:g} px" + (f", gridsize {sel[0]['gridsize']}" if method != "baseline" else "")
            axes[0].semilogx(dose, [r["phase_ssim"] for r in sel], style, label=label)
            axes[1].semilogx(dose, [r["frc_resolution_cycles_per_pixel"] for r in sel], style)
    axes[0].set(xlabel="incident photons per pattern", ylabel="phase SSIM")
    axes[1].set(xlabel="incident photons per pattern", ylabel="FRC 1/2-bit resolution (cycles/px)")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the table and plot")
    p.add_argument("--doses", type=float, nargs="+", default=[1e3, 1e4, 1e5, 1e6, 1e7])
    p.add_argument("--steps", type=float, nargs="+", default=[8.0, 14.0],
                   help="scan steps in px (8: ~70 %% linear overlap, 14: ~48 %%)")
    p.add_argument("--gridsize", type=int, nargs="+", default=[DataConfig.gridsize],
                   help="the network's group size (groups of gridsize^2): one for all steps or one per step")
    p.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    p.add_argument("--checkpoint-monitor", default=TrainConfig.checkpoint_monitor, choices=("val_loss", "train_loss"),
                   help="picks the network's exported epoch (train_loss: in effect the last)")
    p.add_argument("--iterations", type=int, default=SolverConfig.iterations, help="ePIE passes for the baseline")
    p.add_argument("--refine-iterations", type=int, default=SolverConfig.refine_iterations)
    p.add_argument("--momentum", type=float, default=SolverConfig.momentum,
                   help="the baseline's momentum on the smooth change (solver.momentum)")
    p.add_argument("--refine-momentum", type=float, default=SolverConfig.refine_momentum,
                   help="the refinements' momentum (solver.refine_momentum)")
    p.add_argument("--refine-batch-size", type=int, default=SolverConfig.refine_batch_size,
                   help="positions per step of the refinements (solver.refine_batch_size)")
    p.add_argument("--refine-smooth-scale", type=float, default=SolverConfig.refine_smooth_scale,
                   help="the refinement's large-scale fit (solver.refine_smooth_scale; 0 = off)")
    p.add_argument("--refine-smooth-momentum", type=float, default=SolverConfig.refine_smooth_momentum,
                   help="that fit's momentum (solver.refine_smooth_momentum)")
    p.add_argument("--engine", default=SolverConfig.engine, choices=("epie", "lsqml"),
                   help="the iterative engine of the baseline and the refinements (solver.engine)")
    p.add_argument("--networks", type=Path, default=None,
                   help="keep each case's trained network here and reuse it when a later run finds it "
                        "(same step, dose, gridsize, epochs and monitor; its training time is the first run's)")
    p.add_argument("--quick", action="store_true", help="12 x 12 positions, 8 epochs, 40 + 12 passes")
    p.add_argument("--centroid-phase", type=float, default=InferConfig.centroid_phase,
                   help="the recon stage's infer.centroid_phase (0: no slow phase from the centroids)")
    p.add_argument("--slow-modulus", type=float, default=InferConfig.slow_modulus,
                   help="the recon stage's infer.slow_modulus (0: no slow modulus from the totals)")
    a = p.parse_args()
    if len(a.gridsize) == 1:
        a.gridsize = a.gridsize * len(a.steps)
    if len(a.gridsize) != len(a.steps):
        p.error(f"--gridsize needs one value, or one per step ({len(a.steps)}); got {len(a.gridsize)}")
    torch.set_num_threads(2)
    size = dict(rows=12, cols=12) if a.quick else {}
    if a.quick:
        a.epochs, a.iterations, a.refine_iterations = 8, 40, 12
    settings = SolverConfig(a.iterations, a.refine_iterations, momentum=a.momentum, refine_momentum=a.refine_momentum,
                            refine_batch_size=a.refine_batch_size, engine=a.engine,
                            refine_smooth_scale=a.refine_smooth_scale,
                            refine_smooth_momentum=a.refine_smooth_momentum)
    print(f"machine: {torch.get_num_threads()} torch threads, device cpu", flush=True)
    rows = []
    for step, gridsize in zip(a.steps, a.gridsize):
        for dose in a.doses:
            spec = ScanSpec(step=step, nphotons=dose, **size)
            case = case_name(spec, gridsize, a.epochs, a.checkpoint_monitor)
            with tempfile.TemporaryDirectory() as scratch:
                work = Path(scratch) if a.networks is None else a.networks / case
                work.mkdir(parents=True, exist_ok=True)
                result, _ = run_case(spec, gridsize, a.epochs, a.checkpoint_monitor, settings, work,
                                     infer=InferConfig(centroid_phase=a.centroid_phase,
                                                       slow_modulus=a.slow_modulus))
            for method, s in result.items():
                rows.append({"step": step, "gridsize": gridsize, "nphotons": dose, "method": method, **s})
                print(f"step {step:4.1f}  gridsize {gridsize}  dose {dose:8.0e}  {method:10s} " +
                      " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "dose_study.json").write_text(json.dumps(rows, indent=1))
    with open(a.out / "dose_study.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    plot(rows, a.out / "dose_study.png")
    print(f"wrote {a.out}/dose_study.{{json,csv,png}}")


if __name__ == "__main__":
    main()
