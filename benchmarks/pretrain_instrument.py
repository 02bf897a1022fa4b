"""Pretrain the model of an instrument setting on many simulated objects, within a time budget.

    python benchmarks/pretrain_instrument.py --simulated-scans 128 --batch-size 64 --budget-s 300 \
        --out results/instrument/fly001                      # on a GPU
    python benchmarks/pretrain_instrument.py --simulated-scans 2 --budget-s 20 --threads 2   # a CPU try

The model of the instrument setting is trained with the library's trainer (the `train`
stage's code path) on --train plus --simulated-scans random-object scans made with
their probe, positions and dose. A first run of --probe-epochs epochs times the data
preparation and an epoch (the first epoch, with its warm-up, is left out); the second
run takes as many epochs as fit in --budget-s (the cosine schedule spans them all).
The bundle is exported to OUT/wts.h5.zip, reloaded, and --test (a scan the model never
saw) reconstructed with it as is and scored against its objectGuess on the `evaluate`
stage's footing. `generalisation.py --instrument-bundle OUT/wts.h5.zip` then adapts it
on the CPU. Prints the machine, the throughput and the score; writes OUT/pretrain.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

import scans
from ptycho_lib.bundle import export_checkpoint, load_network
from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import scanned_region
from ptycho_lib.io import read_npz
from ptycho_lib.metrics import compare
from ptycho_lib.runtime import pick_accelerator
from ptycho_lib.scan import scan_from
from ptycho_lib.training import train


class EpochClock(Callback):
    """Wall time of the data preparation (before the first epoch) and of each epoch, and
    the patterns (group members) an epoch sees."""

    def __init__(self):
        self.t0, self.starts, self.fit_start, self.fit_end, self.patterns = None, [], None, None, 0

    def on_fit_start(self, trainer, module):
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, module):
        self.starts.append(time.perf_counter())
        self.patterns = len(trainer.train_dataloader.dataset) * module.hparams.gridsize**2

    def on_fit_end(self, trainer, module):
        self.fit_end = time.perf_counter()

    def epochs(self) -> list[float]:
        ends = [*self.starts[1:], self.fit_end]
        return [e - s for s, e in zip(self.starts, ends)]


def run(train_scans, out: Path, epochs: int, a, accelerator: str) -> tuple[Path, EpochClock, float]:
    clock = EpochClock()
    clock.t0 = t = time.perf_counter()
    ckpt = train(train_scans, None, out, DataConfig(simulated_scans=a.simulated_scans), ModelConfig(),
                 TrainConfig(max_epochs=epochs, batch_size=a.batch_size, learning_rate=a.learning_rate,
                             deterministic=a.deterministic, logger="none"),
                 ExecConfig(accelerator=accelerator, threads=a.threads, quiet=True), callbacks=(clock,))
    return ckpt, clock, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, nargs="+", default=[Path("resources/fly001.npz")],
                   help="measured scans of the instrument setting")
    p.add_argument("--test", type=Path, default=Path("resources/fly002.npz"), help="a scan it never sees")
    p.add_argument("--simulated-scans", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64, help="groups per step")
    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--budget-s", type=float, default=300, help="wall time for the epochs of the second run")
    p.add_argument("--probe-epochs", type=int, default=2)
    p.add_argument("--min-epochs", type=int, default=10)
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/instrument/fly001"))
    a = p.parse_args()
    accelerator = pick_accelerator(a.accelerator)
    info = scans.machine(accelerator)
    if accelerator == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    scans.print_machine(info)
    train_scans = [scan_from(canonicalise(read_npz(path), path)) for path in a.train]

    _, clock, _ = run(train_scans, a.out / "probe", a.probe_epochs, a, accelerator)
    probe_epochs = clock.epochs()
    epoch_s = min(probe_epochs[1:] or probe_epochs)
    prep_s = clock.fit_start - clock.t0
    epochs = max(a.min_epochs, min(a.max_epochs, int(a.budget_s / epoch_s)))
    print(f"timing run: preparation {prep_s:.1f} s, epochs {' '.join(f'{e:.1f}' for e in probe_epochs)} s "
          f"-> {epochs} epochs in the budget of {a.budget_s:.0f} s", flush=True)

    ckpt, clock, total = run(train_scans, a.out / "train", epochs, a, accelerator)
    times = clock.epochs()
    steady = sorted(times[1:] or times)[len(times[1:] or times) // 2]
    patterns = clock.patterns
    bundle = a.out / "wts.h5.zip"
    export_checkpoint(ckpt, bundle)
    test = scan_from(canonicalise(read_npz(a.test), a.test))
    net, _ = load_network(bundle, n=test.n)
    from ptycho_lib.reconstruct import reconstruct  # after the training: its device is settled
    obj = reconstruct(net.to(accelerator), test, InferConfig(), accelerator).object
    score = compare(obj, test.obj, scanned_region(test.x, test.y))
    result = {"machine": info, "settings": {k: str(v) for k, v in vars(a).items()}, "epochs": epochs,
              "patterns_per_epoch": patterns, "total_s": round(total, 1),
              "epoch_s_median": round(steady, 3), "epoch_s": [round(e, 3) for e in times],
              "patterns_per_s": round(patterns / steady), "probe_run": {"preparation_s": round(prep_s, 1),
                                                                        "epoch_s": [round(e, 3) for e in probe_epochs]},
              "reused_on_test": {k: round(float(score[k]), 4) for k in ("amplitude_ssim", "phase_ssim")}}
    (a.out / "pretrain.json").write_text(json.dumps(result, indent=1))
    print(f"trained {epochs} epochs of {patterns} patterns in {total:.1f} s: epoch {steady:.2f} s "
          f"(median), {patterns / steady:.0f} patterns/s; reused on {a.test.name} as is: amplitude / phase SSIM "
          f"{result['reused_on_test']['amplitude_ssim']:.3f} / {result['reused_on_test']['phase_ssim']:.3f}; "
          f"wrote {bundle}", flush=True)


if __name__ == "__main__":
    main()
