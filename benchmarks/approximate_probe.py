"""An approximate probe: do the baseline and the refinement recover with probe refinement?

    python benchmarks/approximate_probe.py
    python benchmarks/approximate_probe.py --data resources/fly002.npz --blur 2.0

Reconstructs --data (a raw NPZ with objectGuess and probeGuess) with the baseline
(from a flat object) and the refinement (from the network's reconstruction) three ways:
with the file's probe; with that probe blurred by a Gaussian of --blur pixels (the
kind of estimate a beamline has), not refined; and blurred, with probe refinement. As
in the pipeline, the network is trained (the train stage's defaults) with the probe the
solvers are given: once with the file's, once with the blurred one. Prints amplitude and phase SSIM against objectGuess
(as the evaluate stage scores them), the probe's distance from the file's (relative,
after the best complex scale) and wall times; writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import scans
from ptycho_lib.bundle import export_checkpoint, load_network
from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, SolverConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import scanned_region
from ptycho_lib.io import read_npz
from ptycho_lib.iterative import Solver, refine
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import scan_from
from ptycho_lib.training import train


def blurred(probe: np.ndarray, sigma: float) -> np.ndarray:
    """The probe convolved with a Gaussian of `sigma` pixels (a product in Fourier space)."""
    fy, fx = np.fft.fftfreq(probe.shape[0])[:, None], np.fft.fftfreq(probe.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(probe) * np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)))


def probe_error(probe: np.ndarray, truth: np.ndarray) -> float:
    c = np.vdot(probe, truth) / np.vdot(probe, probe)
    return float(np.linalg.norm(c * probe - truth) / np.linalg.norm(truth))


def network_object(scan, threads: int) -> np.ndarray:
    """The network's reconstruction of `scan`, trained on it here."""
    with tempfile.TemporaryDirectory() as work:
        ckpt = train(scan, None, work, DataConfig(), ModelConfig(), TrainConfig(logger="none"),
                     ExecConfig(threads=threads, quiet=True))
        export_checkpoint(ckpt, Path(work) / "wts.h5.zip")
        net, _ = load_network(Path(work) / "wts.h5.zip", n=scan.n)
    return reconstruct(net, scan, InferConfig(), "cpu").object


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("resources/fly001.npz"))
    p.add_argument("--blur", type=float, default=1.5, help="Gaussian blur of the probe, pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/approximate_probe.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    info = scans.machine("cpu")
    scans.print_machine(info)
    scan = scan_from(canonicalise(read_npz(a.data), a.data))
    region = scanned_region(scan.x, scan.y)
    true = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
    guess = scale_probe(blurred(true, a.blur), scan.nphotons)
    starts = {}
    for name, probe in (("file", scan.probe), ("blurred", blurred(scan.probe, a.blur))):
        t = time.perf_counter()
        pinn = network_object(dataclasses.replace(scan, probe=probe.astype(np.complex64)), a.threads)
        starts[name] = np.where(np.abs(pinn) > 0, pinn, 1).astype(np.complex64)
        s = compare(pinn, scan.obj, region)
        print(f"network trained with the {name} probe ({time.perf_counter() - t:.0f} s): amplitude SSIM "
              f"{s['amplitude_ssim']:.3f}  phase SSIM {s['phase_ssim']:.3f}", flush=True)
    rows = []
    for label, probe, refine_probe in (("file's probe", true, False), (f"blurred {a.blur:g} px", guess, False),
                                       (f"blurred {a.blur:g} px, refined", guess, True)):
        cfg = SolverConfig(probe_refinement=refine_probe)
        start = starts["file" if probe is true else "blurred"]
        for method in ("baseline", "refined"):
            t = time.perf_counter()
            if method == "baseline":
                solver = Solver(scan.amplitude, probe, scan.y, scan.x, np.ones(scan.obj.shape), cfg)
                solver.run()
            else:
                solver, _ = refine(scan.amplitude, probe, scan.y, scan.x, start, cfg, cfg.refine_iterations)
            seconds = time.perf_counter() - t
            s = compare(solver.obj.numpy(), scan.obj, region)
            row = {"probe": label, "method": method, "amplitude_ssim": s["amplitude_ssim"],
                   "phase_ssim": s["phase_ssim"], "passes": solver.passes, "wall_s": seconds,
                   "probe_error_start": probe_error(probe, true), "probe_error": probe_error(solver.probe.numpy(), true)}
            rows.append(row)
            print(f"{label:28s} {method:8s} amplitude SSIM {row['amplitude_ssim']:.3f}  phase SSIM "
                  f"{row['phase_ssim']:.3f}  probe error {row['probe_error_start']:.3f} -> {row['probe_error']:.3f}  "
                  f"{solver.passes} passes {seconds:.1f} s", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": info, "settings": {k: str(v) for k, v in vars(a).items()},
                                 "rows": rows}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
