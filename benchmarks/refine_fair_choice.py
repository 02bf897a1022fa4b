"""The refinement's setting chosen fairly, then replayed, against iterative.refine, on
the dose study's cases (the networks kept by `benchmarks/dose_study.py --networks
/tmp/dose/nets`; this script reads that folder).

    python benchmarks/refine_fair_choice.py

iterative.refine judges its path by held-out patterns that the network's object (its
start and prior) was made from, which favours that object. Here the network's object
is stitched without the held-out patterns, the path starts from and is pulled toward
that object, and the setting the held-out NLL picks (passes, pull) is then replayed on
all patterns from the full object. Prints phase / amplitude SSIM (truth read here
only), the passes and the wall time of each.
"""
import sys, dataclasses, time
import numpy as np, torch
from ptycho_lib import iterative
from ptycho_lib.bundle import load_network
from ptycho_lib.config import InferConfig, SolverConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import scanned_region
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import ScanSpec, simulate
torch.set_num_threads(2)
NETWORKS = "/tmp/dose/nets"
cfg = SolverConfig()
for step in (14.0, 8.0):
  for dose in (1e3, 1e4, 1e5, 1e6, 1e7):
    spec = ScanSpec(step=step, nphotons=dose)
    scan = scan_from(canonicalise(simulate(spec), "x.npz"))
    region = scanned_region(scan.x, scan.y)
    probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
    net, _ = load_network(f"{NETWORKS}/step{step:g}_dose{dose:g}_{spec.rows}x{spec.cols}_gridsize2_30val_loss/wts.h5.zip", n=scan.n)
    full = reconstruct(net, scan, InferConfig(), "cpu")
    m = len(scan.x)
    held = iterative.spread_subset(m, cfg.holdout_fraction)
    fit = np.setdiff1d(np.arange(m), held)
    sub = dataclasses.replace(scan, amplitude=scan.amplitude[fit], x=scan.x[fit], y=scan.y[fit])
    part = reconstruct(net, sub, InferConfig(), "cpu")
    fair = np.ones_like(full.object)
    dy, dx = (int(a - b) for a, b in zip(full.origin, part.origin))
    h, w = part.object.shape
    fair[dy:dy + h, dx:dx + w] = np.where(np.abs(part.object) > 0, part.object, 1)
    start = np.where(np.abs(full.object) > 0, full.object, 1)
    sc = lambda o: "%.3f/%.3f" % (compare(o, scan.obj, region)["phase_ssim"], compare(o, scan.obj, region)["amplitude_ssim"])
    t = time.perf_counter()
    now, _ = iterative.refine(scan.amplitude, probe, scan.y, scan.x, start, cfg, cfg.refine_iterations)
    t_now = time.perf_counter() - t
    t = time.perf_counter()
    path, curve = iterative.refine(scan.amplitude, probe, scan.y, scan.x, fair, cfg, cfg.refine_iterations)
    chosen = path.passes - (1 if path.passes else 0)  # refine adds one finishing pass
    schedule = iterative.pull_schedule(cfg.refining(), cfg.refine_iterations)
    replay = iterative.Solver(scan.amplitude, probe, scan.y, scan.x, start, cfg.refining(), prior=start)
    for k in range(path.passes):
        replay.run(1, pull=schedule[min(k, chosen - 1)] if chosen else 0.0)
    t_fair = time.perf_counter() - t
    print(f"{step:g} {dose:g}: network {sc(start)} fair-start {sc(fair)} | now {now.passes} {sc(now.obj.numpy())} ({t_now:.1f}s)"
          f" | fair choice {path.passes} {sc(path.obj.numpy())}, replayed {sc(replay.obj.numpy())} ({t_fair:.1f}s)"
          f" | fair curve " + " ".join(f"{int(p)}:{n:.5f}" for p, _, n in curve), flush=True)
