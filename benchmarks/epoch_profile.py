"""Where a training epoch's time goes, for this checkout and an earlier one, side by side.

    python benchmarks/epoch_profile.py --threads 2                    # this checkout alone
    python benchmarks/epoch_profile.py --threads 2 --before cc2cf80   # and the code of cc2cf80, same run
    python benchmarks/epoch_profile.py --threads 2 --before cc2cf80 --seeds 0 1 2   # quality over seeds
    python benchmarks/epoch_profile.py --threads 2 --before cc2cf80 --stem 4        # this checkout's N/4 network

Trains on fly001 with the `train` stage's defaults (the library's own trainer) under
Lightning's SimpleProfiler and splits each epoch into gradient steps, loading batches,
the batch-norm refresh, validation, checkpointing and the rest; the preparation before
the first epoch (estimates, groups, simulated scans) is timed apart. Then the exported
network reconstructs fly001 and is scored against objectGuess, so a faster epoch can be
checked for equal quality. With --before, the code of that git revision (exported with
`git archive`) trains in the same invocation, in a fresh process like this checkout's;
--repeats alternates the two, once per seed in --seeds (the final SSIM of one seed is
noisy to ~0.01). Prints the machine, a line per run, each code's mean epoch and final
SSIM, and the speed-up of the epoch; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# profiler actions (matched by substring) -> part of the epoch
PARTS = {"gradient steps": ("run_training_batch",), "loading batches": ("train_dataloader_next",),
         "batch-norm refresh": ("BatchNorm.on_",),
         "validation": ("validation_step", "val_next"), "checkpointing": ("save_checkpoint",)}


def child(code: Path, epochs: int, threads: int, scan_path: Path, seed: int, stem: int | None) -> dict:
    """One training with the ptycho_lib under `code`, profiled."""
    sys.path.insert(0, str(code))
    import lightning as L
    import torch
    from lightning.pytorch.profilers import SimpleProfiler

    import ptycho_lib.training as training
    from ptycho_lib.bundle import export_checkpoint, load_network
    from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, TrainConfig
    from ptycho_lib.contract import canonicalise
    from ptycho_lib.geometry import scanned_region
    from ptycho_lib.io import read_npz
    from ptycho_lib.metrics import compare
    from ptycho_lib.reconstruct import reconstruct
    from ptycho_lib.scan import scan_from

    torch.set_num_threads(threads)
    profiler, started = SimpleProfiler(), {}

    class Profiled(L.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "profiler": profiler})

        def fit(self, *args, **kwargs):
            started["fit"] = time.perf_counter()
            return super().fit(*args, **kwargs)

    training.L.Trainer = Profiled
    scan = scan_from(canonicalise(read_npz(scan_path), scan_path))
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        model = ModelConfig() if stem is None else ModelConfig(stem=stem)
        ckpt = training.train(scan, None, work, DataConfig(), model,
                              TrainConfig(max_epochs=epochs, logger="none", seed=seed),
                              ExecConfig(threads=threads, quiet=True))
        total = time.perf_counter() - t0
        export_checkpoint(ckpt, Path(work) / "wts.h5.zip")
        net, _ = load_network(Path(work) / "wts.h5.zip", n=scan.n)
    s = compare(reconstruct(net, scan, InferConfig(), "cpu").object, scan.obj, scanned_region(scan.x, scan.y))
    durations = profiler.recorded_durations
    epoch = sum(durations["run_training_epoch"]) / epochs
    parts = {part: sum(sum(v) for k, v in durations.items() if any(m in k for m in marks)) / epochs
             for part, marks in PARTS.items()}
    parts["rest"] = epoch - sum(parts.values())
    return {"epoch_s": epoch, "parts_s": parts, "preparation_s": started["fit"] - t0, "train_s": total,
            "phase_ssim": s["phase_ssim"], "amplitude_ssim": s["amplitude_ssim"]}


def exported(rev: str, into: Path) -> Path:
    """The ptycho_lib of git revision `rev`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ptycho_lib"], check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        tarfile.open(fileobj=f).extractall(into, filter="data")
    return into


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", help="git revision whose code trains beside this checkout's")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (both codes, each in turn)")
    p.add_argument("--stem", type=int, choices=(2, 4), help="this checkout's network stem (model.stem; default: its "
                   "default)")
    p.add_argument("--scan", type=Path, default=ROOT / "resources/fly001.npz")
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/epoch_profile.json")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.epochs, a.threads, a.scan, a.seeds[0], a.stem)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import scans

    info = scans.machine("cpu")
    scans.print_machine(info)
    runs = {"now": [], **({"before": []} if a.before else {})}
    with tempfile.TemporaryDirectory() as tmp:
        code = {"now": ROOT, **({"before": exported(a.before, Path(tmp))} if a.before else {})}
        for seed in [s for _ in range(a.repeats) for s in a.seeds]:
            for name in runs:
                stem = ["--stem", str(a.stem)] if a.stem and name == "now" else []
                out = subprocess.run([sys.executable, __file__, "--child", str(code[name]), "--epochs", str(a.epochs),
                                      "--threads", str(a.threads), "--scan", str(a.scan), "--seeds", str(seed), *stem],
                                     check=True, capture_output=True, text=True).stdout
                r = {"seed": seed, **json.loads(out.strip().splitlines()[-1])}
                runs[name].append(r)
                print(f"{name:6s} seed {seed} epoch {r['epoch_s']:.2f} s = "
                      + ", ".join(f"{k} {v:.2f}" for k, v in r["parts_s"].items())
                      + f"; preparation {r['preparation_s']:.1f} s, training {r['train_s']:.0f} s; "
                      f"phase / amplitude SSIM {r['phase_ssim']:.3f} / {r['amplitude_ssim']:.3f}", flush=True)
    keys = ("epoch_s", "phase_ssim", "amplitude_ssim")
    summary = {"mean": {name: {k: sum(r[k] for r in v) / len(v) for k in keys} for name, v in runs.items()}}
    for name, m in summary["mean"].items():
        print(f"{name:6s} mean of {len(runs[name])}: epoch {m['epoch_s']:.2f} s, final phase / amplitude SSIM "
              f"{m['phase_ssim']:.3f} / {m['amplitude_ssim']:.3f}")
    if a.before:
        mean = {k: v["epoch_s"] for k, v in summary["mean"].items()}
        summary["epoch_speedup"] = mean["before"] / mean["now"]
        print(f"epoch time: {mean['before']:.2f} s before ({a.before}), {mean['now']:.2f} s now: "
              f"{summary['epoch_speedup']:.2f}x faster")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": info, "settings": {k: str(v) for k, v in vars(a).items()},
                                 "runs": runs, **summary}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
