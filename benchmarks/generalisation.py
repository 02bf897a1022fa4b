"""Train once, reconstruct many: a model reused on a scan it never saw, as is and adapted.

    python benchmarks/generalisation.py                                  # fly001's setting -> fly002
    python benchmarks/generalisation.py --simulated-scans 4 --instrument-epochs 60 --adapt-epochs 1 3 10
    python benchmarks/generalisation.py --train A.npz B.npz --test C.npz
    python benchmarks/generalisation.py --instrument-bundle results/instrument/fly001/wts.h5.zip  # pretrained

Everything runs in this process, one step after another, on the same machine, with the
library's trainer and the `train` stage's defaults unless said otherwise:
- `single`: a model trained on the first --train scan alone (the per-scan recipe);
- `instrument`: the model of the instrument setting, trained on every --train scan plus
  --simulated-scans random-object scans made like them, for --instrument-epochs (or
  the bundle --instrument-bundle, pretrained elsewhere: pretrain_instrument.py on a GPU);
- `own`: a model trained on --test itself (what every new scan needed so far);
- each of `single` and `instrument` reused on --test as is and adapted to it (fine-tuned
  on --test starting from the reused weights) for each of --adapt-epochs, the ways
  --adapt-with says: `refined`, taught by the reused model's refined reconstruction of
  --test (the adapt stage's default; its fit time includes making that teacher), and
  `counts`, fitting the counts with the training loss;
- `baseline`: ePIE from a flat object for --iterations passes (300: to convergence),
  scored every 5 passes, so its converged quality and the time it takes to come within
  --margin of it are known;
- `refined`: every network reconstruction refined as the `refined` stage does (the
  pull and passes chosen by held-out patterns).
Each network row scores the `infer` stage's object (with the slow modulus and phase
from the patterns' totals and centroids, infer.slow_modulus and infer.centroid_phase)
and, beside it, the same as stitched, without those corrections.
Scores are against --test's objectGuess on the `evaluate` stage's footing. Times:
training or adaptation, reconstruction, refinement, and `raw_to_refined` (adaptation +
reconstruction + refinement; the reused model is already trained). Prints the machine
and a line per result; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import scans
from ptycho_lib.bundle import export_checkpoint, load_network
from ptycho_lib.config import ADAPTATION, DataConfig, ExecConfig, InferConfig, ModelConfig, SolverConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.data import teacher_patches
from ptycho_lib.geometry import scanned_region
from ptycho_lib.io import read_npz
from ptycho_lib.iterative import Solver, refine
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import scan_from
from ptycho_lib.training import train

SCORES = ("amplitude_ssim", "phase_ssim")


class Study:
    def __init__(self, test, threads: int, margin: float):
        self.test, self.threads, self.margin = test, threads, margin
        self.region = scanned_region(test.x, test.y)
        self.probe = scale_probe(test.probe.astype(np.complex128), test.nphotons)
        self.rows = {}

    def score(self, obj) -> dict:
        s = compare(obj, self.test.obj, self.region)
        return {k: round(float(s[k]), 4) for k in SCORES}

    def fit(self, scans_, epochs: int, simulated: int = 0, init=None, teacher=None):
        """Train (or adapt the network `init`, taught by `teacher` patches); returns (network, seconds)."""
        with tempfile.TemporaryDirectory() as work:
            t = time.perf_counter()
            data, train_cfg = DataConfig(simulated_scans=simulated), TrainConfig(max_epochs=epochs, logger="none")
            if init is not None:  # as the adapt stage
                data, train_cfg = replace(data, **ADAPTATION["data"]), replace(train_cfg, **ADAPTATION["train"])
            model = ModelConfig() if init is None else init.settings(ModelConfig())
            ckpt = train(scans_, None, work, data, model, train_cfg, ExecConfig(threads=self.threads, quiet=True),
                         init=None if init is None else init.state_dict(), teacher=teacher)
            seconds = time.perf_counter() - t
            export_checkpoint(ckpt, Path(work) / "wts.h5.zip")
            net, _ = load_network(Path(work) / "wts.h5.zip", n=self.test.n)
        return net, seconds

    def teacher(self, net):
        """What the teacher rule makes: `net`'s reconstruction of --test, refined, as
        each pattern's patch (data.teacher_patches); returns (patches, seconds)."""
        t = time.perf_counter()
        rec = reconstruct(net, self.test, InferConfig(), "cpu")
        start = np.where(np.abs(rec.object) > 0, rec.object, 1)
        solver, _ = refine(self.test.amplitude, self.probe, rec.y, rec.x, start, SolverConfig(),
                           SolverConfig.refine_iterations)
        return teacher_patches(solver.obj.numpy(), rec.y, rec.x, self.test.n), time.perf_counter() - t

    def network_row(self, name: str, net, fit_s: float, **info) -> None:
        """Reconstruct --test with `net`, refine it, record both."""
        t = time.perf_counter()
        obj = reconstruct(net, self.test, InferConfig(), "cpu").object
        recon_s = time.perf_counter() - t
        stitched = reconstruct(net, self.test, InferConfig(centroid_phase=0.0, slow_modulus=0.0), "cpu").object
        t = time.perf_counter()
        start = np.where(np.abs(obj) > 0, obj, 1)
        solver, _ = refine(self.test.amplitude, self.probe, self.test.y, self.test.x, start, SolverConfig(),
                           SolverConfig.refine_iterations)
        refine_s = time.perf_counter() - t
        # a reused model's training was done once, before; an adaptation is part of this scan's time
        raw_to_refined = (fit_s if info.get("adapted_epochs") else 0.0) + recon_s + refine_s
        row = {**info, "fit_s": round(fit_s, 1), "recon_s": round(recon_s, 1), "network": self.score(obj),
               "network_as_stitched": self.score(stitched),
               "refine_s": round(refine_s, 1), "refine_passes": solver.passes,
               "refined": self.score(solver.obj.numpy()), "raw_to_refined_s": round(raw_to_refined, 1)}
        self.rows[name] = row
        pair = lambda key: f"{row[key]['amplitude_ssim']:.3f} / {row[key]['phase_ssim']:.3f}"  # noqa: E731
        print(f"{name:28s} fit {fit_s:6.1f} s  network {pair('network')} (as stitched "
              f"{pair('network_as_stitched')})  refined {pair('refined')} ({solver.passes} passes, "
              f"{refine_s:.1f} s)  raw to refined {row['raw_to_refined_s']:.1f} s", flush=True)

    def baseline(self, iterations: int) -> None:
        """ePIE from a flat object; scored every 5 passes with the clock stopped."""
        test, clock, curve = self.test, [0.0], []
        solver = Solver(test.amplitude, self.probe, test.y, test.x, np.ones(test.obj.shape), SolverConfig(iterations))
        t = [time.perf_counter()]

        def every_fifth(it, s):
            if (it + 1) % 5 == 0:
                clock[0] += time.perf_counter() - t[0]
                curve.append((it + 1, clock[0], self.score(s.obj.numpy())))
                t[0] = time.perf_counter()

        solver.run(callback=every_fifth)
        final = curve[-1][2]
        reached = next(c for c in curve if all(c[2][k] >= final[k] - self.margin for k in SCORES))
        self.rows["baseline"] = {"passes": iterations, "wall_s": round(curve[-1][1], 1), "scores": final,
                                 "converged_passes": reached[0], "converged_s": round(reached[1], 1),
                                 "curve": [[p, round(s, 2), q] for p, s, q in curve]}
        print(f"{'baseline':28s} {iterations} passes {curve[-1][1]:.1f} s: {final['amplitude_ssim']:.3f} / "
              f"{final['phase_ssim']:.3f}; within {self.margin} of that after {reached[0]} passes, "
              f"{reached[1]:.1f} s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, nargs="+", default=[Path("resources/fly001.npz")],
                   help="measured scans of the instrument setting")
    p.add_argument("--test", type=Path, default=Path("resources/fly002.npz"), help="new scan (with objectGuess)")
    p.add_argument("--epochs", type=int, default=TrainConfig.max_epochs, help="single and own models' epochs")
    p.add_argument("--simulated-scans", type=int, default=2, help="the instrument model's random-object scans")
    p.add_argument("--instrument-epochs", type=int, default=30)
    p.add_argument("--models", nargs="+", choices=("single", "instrument"), default=["single", "instrument"],
                   help="the reused models to study (single: --train's first scan alone)")
    p.add_argument("--instrument-bundle", type=Path,
                   help="reuse this bundle as the instrument model instead of training one here")
    p.add_argument("--adapt-epochs", type=int, nargs="+", default=[1, 3, 5, 10])
    p.add_argument("--adapt-with", nargs="+", choices=("refined", "counts"), default=["refined", "counts"],
                   help="what adaptation learns: the reused model's refined reconstruction, or the counts")
    p.add_argument("--iterations", type=int, default=300,
                   help="baseline passes: enough to converge (fly002 needs ~180), so that its converged quality "
                        "and the time it takes to come within --margin of it are known")
    p.add_argument("--margin", type=float, default=0.005, help="SSIM margin of the baseline's converged quality")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/generalisation.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    info = scans.machine("cpu")
    scans.print_machine(info)
    load = {path: scan_from(canonicalise(read_npz(path), path)) for path in {*a.train, a.test}}
    study = Study(load[a.test], a.threads, a.margin)
    study.baseline(a.iterations)
    own, own_s = study.fit([study.test], a.epochs)
    study.network_row("own", own, own_s, epochs=a.epochs)
    models = {"single": ([load[a.train[0]]], a.epochs, 0),
              "instrument": ([load[path] for path in a.train], a.instrument_epochs, a.simulated_scans)}
    for name, (train_scans, epochs, simulated) in ((k, models[k]) for k in a.models):
        if name == "instrument" and a.instrument_bundle:
            net, _ = load_network(a.instrument_bundle, n=study.test.n)
            study.network_row(f"{name} reused", net, 0.0, bundle=str(a.instrument_bundle))
        else:
            net, fit_s = study.fit(train_scans, epochs, simulated)
            study.network_row(f"{name} reused", net, 0.0, trained_s=round(fit_s, 1), epochs=epochs,
                              simulated_scans=simulated)
        teacher, teacher_s = study.teacher(net) if "refined" in a.adapt_with else (None, 0.0)
        for e in a.adapt_epochs:
            if teacher is not None:
                adapted, adapt_s = study.fit([study.test], e, init=net, teacher=teacher)
                study.network_row(f"{name} taught {e}", adapted, teacher_s + adapt_s, adapted_epochs=e,
                                  teacher_s=round(teacher_s, 1))
            if "counts" in a.adapt_with:
                adapted, adapt_s = study.fit([study.test], e, init=net)
                study.network_row(f"{name} adapted {e}", adapted, adapt_s, adapted_epochs=e)
    own_row = study.rows["own"]
    summary = {"own_fit_s": own_row["fit_s"], "baseline_converged_s": study.rows["baseline"]["converged_s"]}
    for name, row in study.rows.items():
        if name in ("own", "baseline"):
            continue
        row["gap_to_own"] = {k: round(own_row["network"][k] - row["network"][k], 4) for k in SCORES}
        row["fit_fraction_of_own"] = round(row["fit_s"] / own_row["fit_s"], 3)
        row["raw_to_refined_fraction_of_baseline"] = round(row["raw_to_refined_s"] / summary["baseline_converged_s"], 3)
        print(f"{name:28s} gap to own {row['gap_to_own']['amplitude_ssim']:+.3f} / {row['gap_to_own']['phase_ssim']:+.3f}"
              f", fit {row['fit_fraction_of_own']:.2f} of own, raw to refined "
              f"{row['raw_to_refined_fraction_of_baseline']:.2f} of the baseline's time to converge")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": info, "settings": {k: str(v) for k, v in vars(a).items()},
                                 "rows": study.rows, "summary": summary}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
