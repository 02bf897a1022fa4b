"""The two iterative engines side by side: ePIE and LSQ-ML (solver.engine) from a flat
object on the dose study's simulated object, at chosen steps and doses, scored against
the truth after several numbers of passes, with the wall time to each.

    python benchmarks/engines.py                                  # 8 and 14 px, 1e4-1e7
    python benchmarks/engines.py --cases 8:1e6 --passes 25 50 100

Prints one line per case and engine: passes:amplitude/phase SSIM@seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ptycho_lib.config import SolverConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import scanned_region
from ptycho_lib.iterative import Solver
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import ScanSpec, simulate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["8:1e4", "8:1e6", "8:1e7", "14:1e4", "14:1e6", "14:1e7"],
                   help="STEP:PHOTONS per case (scan step in px, incident photons per pattern)")
    p.add_argument("--passes", type=int, nargs="+", default=[25, 50, 100, 200], help="score after these passes")
    p.add_argument("--engines", nargs="+", default=["epie", "lsqml"], choices=("epie", "lsqml"))
    a = p.parse_args()
    torch.set_num_threads(2)
    for case in a.cases:
        step, dose = map(float, case.split(":"))
        scan = scan_from(canonicalise(simulate(ScanSpec(step=step, nphotons=dose)), "engines.npz"))
        region = scanned_region(scan.x, scan.y)
        probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
        for engine in a.engines:
            solver = Solver(scan.amplitude, probe, scan.y, scan.x, np.ones(scan.obj.shape), SolverConfig(engine=engine))
            seconds, scores = 0.0, []
            for passes in sorted(a.passes):
                t = time.perf_counter()
                solver.run(passes - solver.passes)
                seconds += time.perf_counter() - t
                s = compare(solver.obj.numpy(), scan.obj, region)
                scores.append(f"{passes}:{s['amplitude_ssim']:.3f}/{s['phase_ssim']:.3f}@{seconds:.0f}s")
            print(f"step {step:g} px, {dose:g} photons, {engine:5s}  " + "  ".join(scores), flush=True)


if __name__ == "__main__":
    main()
