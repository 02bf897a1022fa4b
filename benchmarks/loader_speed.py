"""How fast the training loader hands out batches: whole batches against one group at a time.

    python benchmarks/loader_speed.py --threads 2
    python benchmarks/loader_speed.py --simulated-scans 16 --batch-size 8 128

Builds the training set of --train (plus --simulated-scans) as the `train` stage does,
then, in one run, for each --batch-size: the loader as training uses it (each batch
gathered in one operation per field, ScansDataset.__getitems__) and the same batches
fetched one group at a time and stacked (what the loader did before), alternated
--repeats times. Checks that the two give identical batches; prints the fastest
microseconds per group of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

import scans
from ptycho_lib.config import DataConfig, ExecConfig, ModelConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.data import input_scale
from ptycho_lib.io import read_npz
from ptycho_lib.model import PtychoNet
from ptycho_lib.scan import scan_from
from ptycho_lib.training import build_datasets, make_loaders


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=Path("resources/fly001.npz"))
    p.add_argument("--simulated-scans", type=int, default=2)
    p.add_argument("--batch-size", type=int, nargs="+", default=[8, 128], help="groups per batch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    scans.print_machine(scans.machine("cpu"))
    scan = scan_from(canonicalise(read_npz(a.train), a.train))
    train_set, _ = build_datasets([scan], None, DataConfig(simulated_scans=a.simulated_scans), 0,
                                  [input_scale(scan.amplitude)], PtychoNet.from_config(scan.n, ModelConfig()).inputs)
    for size in a.batch_size:
        loader, _ = make_loaders(train_set, None, TrainConfig(batch_size=size), ExecConfig())
        order = list(iter(loader.batch_sampler))

        def one_at_a_time():
            return (default_collate([train_set[i] for i in batch]) for batch in order)
        same = all(torch.equal(x, y) for w, o in zip(loader, one_at_a_time()) for x, y in zip(w, o))
        best = {"whole": float("inf"), "single": float("inf")}
        for _ in range(a.repeats):  # alternated; the fastest of each counts (the machine is shared)
            for name, batches in (("whole", lambda: iter(loader)), ("single", one_at_a_time)):
                t = time.perf_counter()
                for _ in batches():
                    pass
                best[name] = min(best[name], time.perf_counter() - t)
        n = len(train_set)
        print(f"batch {size:4d}: {n} groups, whole batches {1e6 * best['whole'] / n:.0f} us/group, one group at a "
              f"time {1e6 * best['single'] / n:.0f} us/group ({best['single'] / best['whole']:.1f}x); identical "
              f"batches: {same}", flush=True)

if __name__ == "__main__":
    main()
