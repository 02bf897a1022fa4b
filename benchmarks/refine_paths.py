"""The refinement's whole path in every case of the dose study, each check scored
against the truth: what the held-out NLL saw and what it should have chosen.

    python benchmarks/refine_paths.py --networks /tmp/dose/nets --out /tmp/paths.json

For each step and dose of benchmarks/dose_study.py (same scans, same networks: pass
the same --networks folder to reuse them), the network, the baseline and the
refinement run to the last pass (`most` = --refine-iterations, no early stop); at
every check the JSON holds the passes, the pull, the held-out NLL per photon and the
amplitude / phase SSIM of the state, so that a stopping or choosing rule can be
judged offline against the best state in hindsight (marked * in the printout: the
highest of the lower of its two SSIMs). Only this benchmark reads the
truth; the refinement itself is the library's (iterative.refine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dose_study import case_name, run_case
from ptycho_lib.config import SolverConfig
from ptycho_lib.geometry import scanned_region
from ptycho_lib.metrics import compare
from ptycho_lib.simulate import ScanSpec


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="JSON file for the paths")
    p.add_argument("--networks", type=Path, required=True, help="the dose study's folder of kept networks")
    p.add_argument("--doses", type=float, nargs="+", default=[1e3, 1e4, 1e5, 1e6, 1e7])
    p.add_argument("--steps", type=float, nargs="+", default=[8.0, 14.0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--refine-iterations", type=int, default=60)
    p.add_argument("--engine", default=SolverConfig.engine, choices=("epie", "lsqml"))
    a = p.parse_args()
    torch.set_num_threads(2)
    # no early stop: patience beyond the last check
    settings = SolverConfig(refine_iterations=a.refine_iterations, engine=a.engine, holdout_patience=10**6)
    cases = []
    for step in a.steps:
        for dose in a.doses:
            spec = ScanSpec(step=step, nphotons=dose)
            work = a.networks / case_name(spec, 2, a.epochs, "val_loss")
            work.mkdir(parents=True, exist_ok=True)
            path = []

            def score(solver, scan, region):
                s = compare(solver.obj.numpy(), scan.obj, region)
                path.append({"passes": solver.passes, "amplitude_ssim": s["amplitude_ssim"],
                             "phase_ssim": s["phase_ssim"]})

            row, curve = run_case(spec, 2, a.epochs, "val_loss", settings, work, on_check=score)
            for point, (passes, pull, nll) in zip(path, curve):
                point.update(pull=float(pull), heldout_nll_per_photon=float(nll))
            cases.append({"step": step, "dose": dose, **{k: {m: v for m, v in s.items()
                                                              if m in ("amplitude_ssim", "phase_ssim", "wall_s")}
                                                          for k, s in row.items()}, "path": path})
            best = max(path, key=lambda q: min(q["phase_ssim"], q["amplitude_ssim"]))
            print(f"step {step:g} dose {dose:g}: network {row['recon']['phase_ssim']:.3f}/"
                  f"{row['recon']['amplitude_ssim']:.3f} baseline {row['baseline']['phase_ssim']:.3f}/"
                  f"{row['baseline']['amplitude_ssim']:.3f}; path (passes pull nll phase amp):", flush=True)
            for q in path:
                print(f"   {q['passes']:3d} {q['pull']:6.2f} {q['heldout_nll_per_photon']:.5f} "
                      f"{q['phase_ssim']:.3f} {q['amplitude_ssim']:.3f}" + (" *" if q is best else ""), flush=True)
            a.out.write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
