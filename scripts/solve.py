"""solve: iterative reconstruction (batched ePIE/rPIE) with the file's probe, refined when asked.

    python -m scripts.solve baseline --test-data results/canonical/fly001.npz
        --output results/baseline/fly001.npz [flags]
    python -m scripts.solve refined --test-data results/canonical/fly001.npz
        --init results/recon/fly001.npz --output results/refined/fly001.npz [flags]

`baseline` starts from a flat object and runs --iterations passes; `refined` starts
from a reconstruction (the network's) and refines it as far as the data say, up to
--refine-iterations passes: the solver runs on all but a spread-out --holdout-fraction
of the patterns, pulled toward the start with the strengths --pulls (then not at all),
and the state where those held-out patterns' Poisson NLL is lowest is kept and given a
last pass over all patterns (`heldout_nll` in the output holds the (passes, pull, NLL)
curve; --holdout-fraction 0 runs --refine-iterations plain passes). The output
is a reconstruction file like infer's (ptycho_lib.reconstruction), with the canvas
origin, the scan's geometry, the solver's `fourier_error` per pass and, with
--probe-refinement, the refined `probe`. Every flag is
a `solver` setting of config/config.yaml (docs/cli.md).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_lib import __version__, cli, config
from ptycho_lib.geometry import canvas_geometry
from ptycho_lib.io import InputError, sha256_file
from ptycho_lib.iterative import Solver, refine, spread_subset
from ptycho_lib.physics import scale_probe
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.scan import load_scan

METHODS = ("baseline", "refined")


def parser(method: str) -> argparse.ArgumentParser:
    p = cli.parser(__doc__, program=method)
    p.add_argument("method", choices=METHODS, help="baseline (from a flat object) or refined (from --init)")
    config.add_flag(p, "--test-data", "--test_data", type=Path, required=True, help="canonical NPZ to reconstruct")
    p.add_argument("--output", type=Path, required=True, help="reconstruction NPZ to write")
    if method == "refined":
        p.add_argument("--init", type=Path, required=True, help="reconstruction NPZ to start from")
    return p


def unseen_start(rec: Reconstruction, m: int, cfg: config.SolverConfig) -> np.ndarray | None:
    """The network's object stitched without the patterns the refinement holds out (the
    large-scale fit is judged by them), when the reconstruction has it for exactly
    those; else None, and when the start itself is kept the large-scale fit and the
    choice of blur are skipped (with a warning when either is on)."""
    held = spread_subset(m, cfg.holdout_fraction) if cfg.holdout_fraction > 0 else None
    unseen = rec.extra.get("unseen_patterns")
    if held is not None and unseen is not None and np.array_equal(unseen, held):
        return np.where(np.abs(rec.extra["object_unseen"]) > 0, rec.extra["object_unseen"], 1).astype(np.complex64)
    if (cfg.refine_smooth_scale > 0 or any(cfg.refine_resolution_scales)) and held is not None:
        print("warning: the reconstruction was not also stitched without the held-out patterns (infer "
              "--holdout-fraction); if the refinement keeps the start, its large-scale fit and choice of blur "
              "are skipped", file=sys.stderr)
    return None


def main(argv):
    method = argv[0] if argv and argv[0] in METHODS else "baseline"
    a, cfg = cli.parse(parser(method), argv)
    solver_cfg = cfg["solver"]
    torch.set_num_threads(cfg["execution"].threads)
    scan = load_scan(a.test_data)
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, None if scan.obj is None else scan.obj.shape)
    y, x = scan.y + oy, scan.x + ox
    init = getattr(a, "init", None)
    if init is None:
        start, passes = np.ones(shape, np.complex64), solver_cfg.iterations
    else:
        rec = Reconstruction.load(init)
        if rec.object.shape != shape:
            raise InputError(init, f"object {rec.object.shape} does not match the scan's canvas {shape}")
        start, passes = np.where(rec.lit(), rec.object, 1).astype(np.complex64), solver_cfg.refine_iterations
        fair_start = unseen_start(rec, len(scan.x), solver_cfg)
    probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
    t0 = time.perf_counter()
    extra = {}
    if init is not None and solver_cfg.holdout_fraction > 0:
        solver, extra["heldout_nll"] = refine(scan.measured, probe, y, x, start, solver_cfg, passes,
                                              fair_start=fair_start)
        passes = solver.passes
        if solver.smooth_curve:
            extra["large_scale_nll"] = np.array(solver.smooth_curve)
        if solver.resolution_curve:
            extra["resolution_nll"] = np.array(solver.resolution_curve)
    else:
        solver = Solver(scan.measured, probe, y, x, start, solver_cfg if init is None else solver_cfg.refining())
        solver.run(passes)
    obj = solver.obj.numpy()
    if solver_cfg.probe_refinement:
        extra["probe"] = solver.probe.numpy()  # on the photon scale, as the solver used it
    seconds = time.perf_counter() - t0
    used = {f.name: getattr(solver_cfg, f.name) for f in config.fields("solver", a.method)}
    provenance = {"data": a.test_data.name, "data_sha256": sha256_file(a.test_data), "solver": used,
                  "passes": passes, "init": init.name if init else "flat",
                  "init_sha256": sha256_file(init) if init else "", "library_version": __version__}
    Reconstruction(obj, solver.coverage().astype(np.float32), x, y, np.array([oy, ox]), dict(scan.geometry),
                   provenance, {"fourier_error": np.array(solver.history, np.float64), **extra}).save(a.output)
    record(a.output, a.method, {"data": a.test_data, **({"init": init} if init else {})}, used,
           extra={"solver_seconds": seconds})
    fit = f", final Fourier error {solver.history[-1]:.4f}" if solver.history else ""
    print(f"{passes} passes in {seconds:.1f} s{fit}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
