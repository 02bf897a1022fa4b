"""Pretrain the model of an instrument setting on many simulated objects, within a time budget.

    python benchmarks/pretrain_instrument.py --simulated-scans 64 --batch-size 128 --budget-s 170 \
        --out results/instrument/fly001                      # on a GPU
    python benchmarks/pretrain_instrument.py --simulated-scans 2 --probe-scans 1 --budget-s 20 --threads 2  # CPU

The model of the instrument setting is trained with the library's trainer (the `train`
stage's code path) on --train plus --simulated-scans random-object scans made with
their probe, positions and dose. Two timing runs of --probe-epochs epochs on
--probe-scans simulated scans, with and without deterministic algorithms, give the
patterns per second; the epoch of the full set is scaled from them (it grows with the
groups), and the training takes as many epochs as fit in --budget-s (the cosine
schedule spans them all; it stops after 1.2 x the budget whatever the estimate).
Every --score-every epochs the network as it stands reconstructs --test (a scan it
never saw), scored against its objectGuess on the `evaluate` stage's footing. The
bundle is exported to OUT/wts.h5.zip and scored the same way; `generalisation.py
--instrument-bundle OUT/wts.h5.zip` then adapts it on the CPU. Prints the machine, the
throughput and the scores; writes OUT/pretrain.json.
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


class ReuseScore(Callback):
    """Every `every` epochs (after the batch-norm refresh), the network as it stands
    reconstructs `test`, a scan it never sees, scored against its objectGuess: how the
    transfer grows with training. Stops the training once `stop_s` have passed since
    the first epoch started, so a slower epoch than the timing run's cannot overrun
    the machine's lease (the bundle is then that epoch's)."""

    def __init__(self, test, every: int, stop_s: float):
        self.test, self.every, self.stop_s, self.rows, self.t0 = test, every, stop_s, [], None

    def on_train_epoch_start(self, trainer, module):
        self.t0 = self.t0 or time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        from ptycho_lib.reconstruct import reconstruct

        epoch, elapsed = trainer.current_epoch + 1, time.perf_counter() - self.t0
        if elapsed > self.stop_s:
            trainer.should_stop = True
            print(f"stopped after epoch {epoch}: {elapsed:.0f} s", flush=True)
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        module.eval()
        obj = reconstruct(module.net, self.test, InferConfig(), str(module.device)).object
        module.train()
        s = compare(obj, self.test.obj, scanned_region(self.test.x, self.test.y))
        self.rows.append({"epoch": epoch, "s": round(elapsed, 1), "amplitude_ssim": round(float(s["amplitude_ssim"]), 4),
                          "phase_ssim": round(float(s["phase_ssim"]), 4)})
        print(f"  epoch {epoch:4d} {elapsed:7.1f} s: reused on the test scan, amplitude / phase SSIM "
              f"{s['amplitude_ssim']:.3f} / {s['phase_ssim']:.3f}", flush=True)


def run(train_scans, out: Path, epochs: int, a, accelerator: str, simulated: int, deterministic: bool,
        extra=()) -> tuple[Path, EpochClock, float]:
    clock = EpochClock()
    clock.t0 = t = time.perf_counter()
    ckpt = train(train_scans, None, out, DataConfig(simulated_scans=simulated), ModelConfig(),
                 TrainConfig(max_epochs=epochs, batch_size=a.batch_size, learning_rate=a.learning_rate,
                             deterministic=deterministic, logger="none"),
                 ExecConfig(accelerator=accelerator, threads=a.threads, quiet=True), callbacks=(clock, *extra))
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
    p.add_argument("--probe-scans", type=int, default=4,
                   help="simulated scans of the timing run (an epoch's time then scales with the groups)")
    p.add_argument("--score-every", type=int, default=5, help="epochs between scores of the reuse on --test")
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

    timing = {}
    for deterministic in (a.deterministic, not a.deterministic):
        _, clock, _ = run(train_scans, a.out / f"probe{int(deterministic)}", a.probe_epochs, a, accelerator,
                          a.probe_scans, deterministic)
        probe_epochs = clock.epochs()
        timing[deterministic] = {"preparation_s": round(clock.fit_start - clock.t0, 1),
                                 "epoch_s": [round(e, 3) for e in probe_epochs],
                                 "patterns_per_s": round(clock.patterns / min(probe_epochs[1:] or probe_epochs))}
        print(f"timing run ({a.probe_scans} simulated scans, deterministic={deterministic}): "
              f"preparation {timing[deterministic]['preparation_s']} s, epochs "
              f"{' '.join(f'{e:.2f}' for e in probe_epochs)} s, {timing[deterministic]['patterns_per_s']} patterns/s",
              flush=True)
    # an epoch's time scales with its groups: every scan has as many as positions
    groups = (len(train_scans) + a.simulated_scans) / (len(train_scans) + a.probe_scans)
    epoch_s = timing[a.deterministic]["epoch_s"]
    epoch_s = min(epoch_s[1:] or epoch_s) * groups
    epochs = max(1, min(a.max_epochs, int(a.budget_s / epoch_s)))
    print(f"-> {epochs} epochs of ~{epoch_s:.1f} s in the budget of {a.budget_s:.0f} s", flush=True)
    test = scan_from(canonicalise(read_npz(a.test), a.test))
    reuse = ReuseScore(test, a.score_every, 1.2 * a.budget_s)
    ckpt, clock, total = run(train_scans, a.out / "train", epochs, a, accelerator, a.simulated_scans,
                             a.deterministic, (reuse,))
    times = clock.epochs()
    steady = sorted(times[1:] or times)[len(times[1:] or times) // 2]
    patterns = clock.patterns
    bundle = a.out / "wts.h5.zip"
    export_checkpoint(ckpt, bundle)
    net, _ = load_network(bundle, n=test.n)
    from ptycho_lib.reconstruct import reconstruct  # after the training: its device is settled
    obj = reconstruct(net.to(accelerator), test, InferConfig(), accelerator).object
    score = compare(obj, test.obj, scanned_region(test.x, test.y))
    result = {"machine": info, "settings": {k: str(v) for k, v in vars(a).items()}, "epochs": epochs,
              "patterns_per_epoch": patterns, "total_s": round(total, 1),
              "epoch_s_median": round(steady, 3), "epoch_s": [round(e, 3) for e in times],
              "patterns_per_s": round(patterns / steady), "timing_runs": {str(k): v for k, v in timing.items()},
              "reuse_by_epoch": reuse.rows,
              "reused_on_test": {k: round(float(score[k]), 4) for k in ("amplitude_ssim", "phase_ssim")}}
    (a.out / "pretrain.json").write_text(json.dumps(result, indent=1))
    print(f"trained {epochs} epochs of {patterns} patterns in {total:.1f} s: epoch {steady:.2f} s "
          f"(median), {patterns / steady:.0f} patterns/s; reused on {a.test.name} as is: amplitude / phase SSIM "
          f"{result['reused_on_test']['amplitude_ssim']:.3f} / {result['reused_on_test']['phase_ssim']:.3f}; "
          f"wrote {bundle}", flush=True)


if __name__ == "__main__":
    main()
