"""Training throughput and time to quality on a scan with a reference object.

    python benchmarks/train_speed.py --threads 2                      # fly001, defaults
    python benchmarks/train_speed.py --threads 2 --compare plain      # and the plain network, same run
    python benchmarks/train_speed.py --threads 2 --compare fp32 batch16
    python benchmarks/train_speed.py --epochs 60 --width 32 --estimate-iterations 0 --no-skips
    python benchmarks/train_speed.py --threads 2 --patterns 162   # the first 6 rows of fly001 only

Trains with the library's own trainer (the `train` stage's code path) and, after every
--eval-every epochs, reconstructs the whole scan with the network as it would be
exported and scores it against objectGuess: over the scanned region and over the
held-out validation band alone. The clock counts training only (scoring is paused
out). In the same invocation the ePIE baseline is run on the same data; the quality
targets are the quality issue's: phase SSIM within --margin and amplitude SSIM within
--amplitude-margin of the baseline's. --compare trains variants of the configured run
too, in the same invocation, and prints the ratio of each one's time to target to the
configured run's: `plain` is the network and settings of earlier versions (plain
PtychoPINN-style input, no skips, width 32, stem 2, batch 16, 60 epochs, fp32), `fp32`
the configured run in float32, `batch16` with batch 16, `width12` and `width8` with a
narrower network, `stem2` with the network that starts at N/2. Prints the machine, a
line per evaluation and the times to target (or that they were not reached).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

import scans
from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.scan import split_rows
from ptycho_lib.geometry import scanned_region
from ptycho_lib.io import read_npz
from ptycho_lib.iterative import Solver, SolverConfig
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import Scan, scan_from
from ptycho_lib.training import train


def band(scan: Scan, rows: np.ndarray) -> tuple[slice, slice]:
    """The region scanned by the given positions (the validation band)."""
    return scanned_region(scan.x[rows], scan.y[rows])


class Scorer(Callback):
    """Scores the network every k epochs; keeps a training-only clock."""

    def __init__(self, scan: Scan, every: int, val_rows: np.ndarray, patterns_per_epoch: int):
        self.scan, self.every, self.val_rows, self.per_epoch = scan, every, val_rows, patterns_per_epoch
        self.rows, self.train_s, self.t0 = [], 0.0, None

    def on_train_epoch_start(self, trainer, module):
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):  # after the batch-norm refresh and validation
        self.train_s += time.perf_counter() - self.t0
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        training = module.training
        module.eval()
        obj = reconstruct(module.net, self.scan, InferConfig(), str(module.device)).object
        module.train(training)
        whole = compare(obj, self.scan.obj, scanned_region(self.scan.x, self.scan.y))
        row = {"epoch": epoch, "train_s": round(self.train_s, 2), "patterns_per_s": epoch * self.per_epoch / self.train_s,
               "val_loss": float(trainer.callback_metrics.get("val_loss", float("nan"))),
               "phase_ssim": whole["phase_ssim"], "amplitude_ssim": whole["amplitude_ssim"],
               "frc_resolution_cycles_per_pixel": whole["frc_resolution_cycles_per_pixel"]}
        if len(self.val_rows):
            held_out = compare(obj, self.scan.obj, band(self.scan, self.val_rows))
            row["val_band_phase_ssim"] = held_out["phase_ssim"]
        self.rows.append(row)
        print(f"  epoch {epoch:3d}  {self.train_s:7.1f} s  {row['patterns_per_s']:6.1f} patterns/s  "
              f"phase SSIM {row['phase_ssim']:.3f} (held-out band {row.get('val_band_phase_ssim', float('nan')):.3f})  "
              f"amplitude SSIM {row['amplitude_ssim']:.3f}  FRC {row['frc_resolution_cycles_per_pixel']:.3f}",
              flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("resources/fly001.npz"), help="raw scan with objectGuess")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/train_speed.json"))
    p.add_argument("--patterns", type=int, default=0, help="use the scan's first PATTERNS patterns (0: all)")
    p.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--width", type=int, default=ModelConfig.width)
    p.add_argument("--gridsize", type=int, default=DataConfig.gridsize)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--scheduler", default=TrainConfig.scheduler)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a busy machine: OpenMP threads wait for each other)")
    p.add_argument("--epie-passes", type=int, default=SolverConfig.iterations,
                   help="passes of the reference ePIE run (0 = skip it)")
    p.add_argument("--estimate-iterations", type=int, default=ModelConfig.estimate_iterations)
    p.add_argument("--no-skips", dest="skips", action="store_false")
    p.add_argument("--stem", type=int, choices=(2, 4), default=ModelConfig.stem)
    p.add_argument("--precision", default=TrainConfig.precision, choices=("auto", "fp32", "bf16"))
    p.add_argument("--compare", nargs="*", default=[],
                   choices=("plain", "fp32", "batch16", "width12", "width8", "stem2"),
                   help="variants also trained in this run (see above)")
    p.add_argument("--margin", type=float, default=0.03, help="target: phase SSIM >= baseline's - margin")
    p.add_argument("--amplitude-margin", type=float, default=0.05,
                   help="target: amplitude SSIM >= baseline's - margin")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    info = scans.machine("cpu")
    scans.print_machine(info)
    c = canonicalise(read_npz(a.raw), a.raw)
    scan = scan_from(c).first(a.patterns)
    if a.patterns:  # the photon scale of the patterns kept, as a file holding only them would give
        scan = dataclasses.replace(scan, nphotons=float(np.mean(np.sum(scan.amplitude.astype(np.float64) ** 2, (1, 2)))))
    region = scanned_region(scan.x, scan.y)

    epie = None
    if a.epie_passes:
        t = time.perf_counter()
        probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
        obj = Solver(scan.amplitude, probe, scan.y, scan.x, np.ones(scan.obj.shape), SolverConfig(a.epie_passes)).run()
        epie = {**{k: v for k, v in compare(obj, scan.obj, region).items() if k.endswith(("ssim", "pixel"))},
                "passes": a.epie_passes, "seconds": time.perf_counter() - t}
        print(f"ePIE baseline, {a.epie_passes} passes: {epie['seconds']:.1f} s, phase SSIM {epie['phase_ssim']:.3f}, "
              f"amplitude SSIM {epie['amplitude_ssim']:.3f}", flush=True)

    data = DataConfig(gridsize=a.gridsize)
    model = ModelConfig(width=a.width, estimate_iterations=a.estimate_iterations, skips=a.skips, stem=a.stem)
    cfg = TrainConfig(max_epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.learning_rate,
                      scheduler=a.scheduler, precision=a.precision, logger="none")
    variants = {"plain": (ModelConfig(width=32, estimate_iterations=0, skips=False, stem=2),
                          replace(cfg, max_epochs=60, batch_size=16, precision="fp32")),
                "fp32": (model, replace(cfg, precision="fp32")),
                "batch16": (model, replace(cfg, batch_size=16)),
                "width12": (replace(model, width=12), cfg), "width8": (replace(model, width=8), cfg),
                "stem2": (replace(model, stem=2), cfg)}
    runs = {"configured": (model, cfg), **{name: variants[name] for name in a.compare}}
    result = {"machine": info, "settings": vars(a) | {"raw": str(a.raw), "out": str(a.out)}, "epie": epie, "runs": {}}
    train_rows, val_rows = split_rows(scan.y, data.val_fraction)
    per_epoch = (data.n_groups or len(train_rows)) * data.gridsize**2
    for name, (model, cfg) in runs.items():
        scorer = Scorer(scan, a.eval_every, val_rows, per_epoch)
        print(f"PINN ({name}): width {model.width}, stem {model.stem}, estimate {model.estimate_iterations} "
              f"iterations, skips {model.skips}, gridsize {a.gridsize}, batch {cfg.batch_size}, lr "
              f"{cfg.learning_rate:g}, scheduler {cfg.scheduler}, precision {cfg.precision}, {cfg.max_epochs} epochs "
              f"of {per_epoch} patterns", flush=True)
        with tempfile.TemporaryDirectory() as work:
            train(scan, None, work, data, model, cfg, ExecConfig(threads=a.threads, quiet=True), callbacks=(scorer,))
        run = result["runs"][name] = {"model": vars(model), "train": vars(cfg), "evaluations": scorer.rows}
        if epie:
            targets = {"phase_ssim": epie["phase_ssim"] - a.margin,
                       "amplitude_ssim": epie["amplitude_ssim"] - a.amplitude_margin}
            reached = next((r for r in scorer.rows if all(r[k] >= v for k, v in targets.items())), None)
            run["targets"], run["time_to_target_s"] = targets, reached and reached["train_s"]
            last = scorer.rows[-1]
            print(f"targets phase SSIM {targets['phase_ssim']:.3f}, amplitude SSIM {targets['amplitude_ssim']:.3f} "
                  f"(ePIE - {a.margin}, - {a.amplitude_margin}): " +
                  (f"reached after {reached['train_s']:.0f} s of training (epoch {reached['epoch']})" if reached else
                   f"not reached; last evaluation phase {last['phase_ssim']:.3f}, amplitude "
                   f"{last['amplitude_ssim']:.3f} after {last['train_s']:.0f} s"), flush=True)
    own = result["runs"]["configured"].get("time_to_target_s")
    for name in a.compare:
        other = result["runs"][name].get("time_to_target_s")
        if own and other:
            print(f"time to target, {name} / configured: {other / own:.2f}x")
        elif own:
            print(f"{name} did not reach the targets; the configured run did in {own:.0f} s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
