"""Generalisation: does a model trained on one scan reconstruct another object?

    python benchmarks/generalisation.py                       # fly001 -> fly002
    python benchmarks/generalisation.py --train A.npz --test B.npz --epochs 30
    python benchmarks/generalisation.py --simulated-scans 2 --transfer-epochs 60

Trains one model on --train and one on --test (the library's trainer, the `train`
stage's defaults), reconstructs --test with both, and scores both reconstructions
against --test's objectGuess on the same footing as the `evaluate` stage. The claim
is the gap: the transferred model's phase SSIM against the one trained on the scan
itself. --simulated-scans and --transfer-epochs change only the transferred model's
training (random-object scans beside --train); the model trained on --test keeps the
per-scan recipe. Both models also reconstruct --train. Prints the machine and a line
per model and scan; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import scans
from ptycho_lib.bundle import export_checkpoint, load_network
from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import scanned_region
from ptycho_lib.io import read_npz
from ptycho_lib.metrics import compare
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import scan_from
from ptycho_lib.training import train

SCORES = ("phase_ssim", "amplitude_ssim", "frc_resolution_cycles_per_pixel")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=Path("resources/fly001.npz"), help="scan the transferred model learns")
    p.add_argument("--test", type=Path, default=Path("resources/fly002.npz"), help="scan reconstructed (with objectGuess)")
    p.add_argument("--epochs", type=int, default=TrainConfig.max_epochs)
    p.add_argument("--gridsize", type=int, default=DataConfig.gridsize)
    p.add_argument("--neighbours", type=int, default=DataConfig.neighbours)
    p.add_argument("--simulated-scans", type=int, default=0, help="the transferred model's random-object scans")
    p.add_argument("--transfer-epochs", type=int, help="the transferred model's epochs (default: --epochs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/generalisation.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    info = scans.machine("cpu")
    scans.print_machine(info)
    by_path = {p: scan_from(canonicalise(read_npz(p), p)) for p in (a.train, a.test)}
    rows = {}
    for name, source, sims, epochs in (("transferred", a.train, a.simulated_scans, a.transfer_epochs or a.epochs),
                                       ("own", a.test, 0, a.epochs)):
        with tempfile.TemporaryDirectory() as work:
            t = time.perf_counter()
            ckpt = train(by_path[source], None, work,
                         DataConfig(gridsize=a.gridsize, neighbours=a.neighbours, simulated_scans=sims), ModelConfig(),
                         TrainConfig(max_epochs=epochs, logger="none"), ExecConfig(threads=a.threads, quiet=True))
            train_s = time.perf_counter() - t
            export_checkpoint(ckpt, Path(work) / "wts.h5.zip")
            net, _ = load_network(Path(work) / "wts.h5.zip", n=by_path[a.test].n)
        rows[name] = {"trained_on": str(source), "simulated_scans": sims, "epochs": epochs, "train_s": train_s}
        for target in (a.test, a.train):  # the test scan's scores first: they are the claim
            scan = by_path[target]
            s = compare(reconstruct(net, scan, InferConfig(), "cpu").object, scan.obj, scanned_region(scan.x, scan.y))
            rows[name]["scores" if target == a.test else f"scores_on_{target.stem}"] = {k: s[k] for k in SCORES}
            print(f"{target.name} by the model trained on {source.name} + {sims} simulated, {epochs} epochs "
                  f"({train_s:4.0f} s of training): " + "  ".join(f"{k} {s[k]:.3f}" for k in SCORES), flush=True)
    gap = rows["own"]["scores"]["phase_ssim"] - rows["transferred"]["scores"]["phase_ssim"]
    print(f"phase SSIM gap (own - transferred): {gap:.3f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": info, "settings": {k: str(v) for k, v in vars(a).items()},
                                 "models": rows, "phase_ssim_gap": gap}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
