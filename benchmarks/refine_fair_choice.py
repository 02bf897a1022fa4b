"""The refinement's setting chosen fairly, then replayed, against iterative.refine, on
the dose study's cases (the networks kept by `benchmarks/dose_study.py --networks DIR`
or benchmarks/refine_paths.py; this script trains none).

    python benchmarks/refine_fair_choice.py --networks /tmp/dose/nets

iterative.refine judges its path by held-out patterns that the network's object (its
start and prior) was made from, which favours that object. Here the network's object
is stitched without the held-out patterns, the path starts from and is pulled toward
that object, and the setting the held-out NLL picks (passes, pull) is then replayed on
all patterns from the full object. Prints phase / amplitude SSIM (truth read here
only), the passes and the wall time of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dose_study import case_name, simulated_scan
from ptycho_lib import iterative
from ptycho_lib.bundle import load_network
from ptycho_lib.config import InferConfig, SolverConfig
from ptycho_lib.metrics import compare
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.simulate import ScanSpec


def network_objects(net, scan, fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's object from all patterns and from the `fit` ones only (as the recon
    stage writes it, `object_unseen`), on one canvas, ones where no patch lies."""
    rec = reconstruct(net, scan, InferConfig(), "cpu", unseen=np.setdiff1d(np.arange(len(scan.x)), fit))
    return (np.where(np.abs(o) > 0, o, 1) for o in (rec.object, rec.extra["object_unseen"]))


def fair_and_replayed(scan, probe, start, fair, cfg: SolverConfig):
    """The path judged from the fair object, then its chosen setting replayed on all
    patterns from `start`: (the path's solver, the replayed object)."""
    path, _ = iterative.refine(scan.amplitude, probe, scan.y, scan.x, fair, cfg, cfg.refine_iterations)
    chosen = path.passes - (1 if path.passes else 0)  # refine adds one finishing pass
    schedule = iterative.pull_schedule(cfg.refining(), cfg.refine_iterations)
    replay = iterative.Solver(scan.amplitude, probe, scan.y, scan.x, start, cfg.refining(), prior=start)
    for k in range(path.passes):
        replay.run(1, pull=schedule[min(k, chosen - 1)] if chosen else 0.0)
    return path, replay.obj.numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", type=Path, required=True, help="the dose study's folder of kept networks")
    p.add_argument("--doses", type=float, nargs="+", default=[1e3, 1e4, 1e5, 1e6, 1e7])
    p.add_argument("--steps", type=float, nargs="+", default=[14.0, 8.0])
    a = p.parse_args()
    torch.set_num_threads(2)
    cfg = SolverConfig()
    for step in a.steps:
        for dose in a.doses:
            spec = ScanSpec(step=step, nphotons=dose)
            scan, region, probe = simulated_scan(spec)
            net, _ = load_network(a.networks / case_name(spec, 2, 30, "val_loss") / "wts.h5.zip", n=scan.n)
            held = iterative.spread_subset(len(scan.x), cfg.holdout_fraction)
            start, fair = network_objects(net, scan, np.setdiff1d(np.arange(len(scan.x)), held))

            def ssim(obj):
                s = compare(obj, scan.obj, region)
                return f"{s['phase_ssim']:.3f}/{s['amplitude_ssim']:.3f}"

            t = time.perf_counter()
            now, _ = iterative.refine(scan.amplitude, probe, scan.y, scan.x, start, cfg, cfg.refine_iterations)
            t_now = time.perf_counter() - t
            t = time.perf_counter()
            path, replayed = fair_and_replayed(scan, probe, start, fair, cfg)
            t_fair = time.perf_counter() - t
            print(f"{step:g} px {dose:g}: network {ssim(start)}, fair start {ssim(fair)} | refine {now.passes} "
                  f"passes {ssim(now.obj.numpy())} ({t_now:.1f} s) | fair choice {path.passes} passes, replayed "
                  f"{ssim(replayed)} ({t_fair:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
