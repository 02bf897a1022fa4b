"""solve: iterative reconstruction (batched ePIE/rPIE) with the known probe.

    python scripts/solve.py --test_data results/canonical/fly001.npz \
        --output results/baseline/fly001.npz [--init results/recon/fly001.npz] [flags]

Without --init the object starts flat (the iterative baseline); with --init it starts
from a reconstruction, e.g. the network's (refinement). The output has the same
layout as infer's, so render and evaluate treat it alike.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptycho_lib import __version__  # noqa: E402
from ptycho_lib.data import load_scan  # noqa: E402
from ptycho_lib.io import InputError, read_npz, sha256_file, write_npz  # noqa: E402
from ptycho_lib.iterative import Solver, SolverConfig  # noqa: E402
from ptycho_lib.physics import scale_probe  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.stitch import canvas_geometry  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--test_data", type=Path, required=True, help="canonical NPZ to reconstruct")
    p.add_argument("--output", type=Path, required=True, help="reconstruction NPZ to write")
    p.add_argument("--init", type=Path, default=None, help="reconstruction NPZ to start from (default: flat)")
    d = SolverConfig()
    p.add_argument("--iterations", type=int, default=d.iterations, help=f"passes over all positions (default: {d.iterations})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"positions per update (default: {d.batch_size})")
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"rPIE regularisation in [0, 1] (default: {d.alpha})")
    p.add_argument("--probe-refinement", action=argparse.BooleanOptionalAction, default=d.probe_refinement,
                   help=f"also refine the probe (default: {d.probe_refinement})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"order of the positions (default: {d.seed})")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    a = p.parse_args(argv)
    if a.iterations < 1 or a.batch_size < 1 or not 0 <= a.alpha <= 1:
        raise ValueError("--iterations and --batch-size must be >= 1 and --alpha in [0, 1]")
    torch.set_num_threads(a.threads)
    cfg = SolverConfig(a.iterations, a.batch_size, a.alpha, a.probe_refinement, a.seed)
    scan = load_scan(a.test_data)
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, None if scan.obj is None else scan.obj.shape)
    y, x = scan.y + oy, scan.x + ox
    if a.init is None:
        start = np.ones(shape, np.complex64)
    else:
        init = read_npz(a.init)
        if init["object"].shape != shape:
            raise InputError(a.init, f"object {init['object'].shape} does not match the scan's canvas {shape}")
        lit = init["weight"] > 1e-3 * init["weight"].max()
        start = np.where(lit, init["object"], 1).astype(np.complex64)
    solver = Solver(scan.amplitude, scale_probe(scan.probe.astype(np.complex128), scan.nphotons), y, x, start, cfg)
    t0 = time.perf_counter()
    obj = solver.run()
    seconds = time.perf_counter() - t0
    provenance = {"data": a.test_data.name, "data_sha256": sha256_file(a.test_data), "solver": asdict(cfg),
                  "init": a.init.name if a.init else "flat",
                  "init_sha256": sha256_file(a.init) if a.init else "", "library_version": __version__}
    write_npz(a.output, {
        "object": obj, "amplitude": np.abs(obj).astype(np.float32), "phase": np.angle(obj).astype(np.float32),
        "weight": solver.coverage().astype(np.float32), "xcoords": x, "ycoords": y,
        "fourier_error": np.array(solver.history, np.float64),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    })
    record(a.output, "solve", {"data": a.test_data, **({"init": a.init} if a.init else {})}, asdict(cfg),
           extra={"solver_seconds": seconds})
    print(f"{cfg.iterations} iterations in {seconds:.1f} s, final Fourier error {solver.history[-1]:.4f}",
          file=sys.stderr)


if __name__ == "__main__":
    run(main)
