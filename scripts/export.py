"""export: turn a training checkpoint into the self-describing bundle wts.h5.zip.

    python scripts/export.py results/train/fly001/best.ckpt results/models/fly001/wts.h5.zip

The manifest's `checkpoint` entry says which epoch the weights are from and, for
best.ckpt, by which metric it was chosen.
"""

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

import torch  # noqa: E402

from ptycho_lib.bundle import write_bundle  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="Lightning checkpoint (loaded with weights_only=True)")
    p.add_argument("bundle", type=Path, help="wts.h5.zip to write")
    a = p.parse_args(argv)
    ckpt = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    manifest = {
        "architecture": {"name": "PtychoNet", "n": hp["n"], "width": hp["width"], "norm": hp["norm"],
                         "input_transform": hp["input_transform"]},
        "gridsize": hp["gridsize"],
        "loss": hp["loss"],
        "input_scale": hp["input_scale"],
        "nphotons": hp["nphotons"],
        "training_data_sha256": hp["data_sha256"],
        "epochs": ckpt["epoch"] + 1,
        "checkpoint": {"file": a.checkpoint.name, "epoch": ckpt["epoch"], "global_step": ckpt["global_step"],
                       **ckpt.get("selection", {})},
    }
    write_bundle(a.bundle, ckpt["state_dict"], manifest)


if __name__ == "__main__":
    run(main)
