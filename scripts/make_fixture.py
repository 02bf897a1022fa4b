"""make_fixture: simulate a legacy-format fly-scan file (see resources/README.md).

    python -m scripts.make_fixture resources/fly001.npz --seed 1 --object-seed 7

Deterministic from the seeds: the same command writes the same bytes. Refuses to
overwrite an existing file unless --force is given.
"""

import argparse
from pathlib import Path

from ptycho_lib.cli import run
from ptycho_lib.io import InputError, write_npz
from ptycho_lib.simulate import ScanSpec, simulate


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="NPZ file to write")
    d = ScanSpec()
    p.add_argument("--seed", type=int, default=d.seed, help=f"scan trajectory and noise (default: {d.seed})")
    p.add_argument("--object-seed", type=int, default=d.object_seed, help=f"object features (default: {d.object_seed})")
    p.add_argument("--n", type=int, default=d.n, help=f"pattern size N (default: {d.n})")
    p.add_argument("--rows", type=int, default=d.rows, help=f"fly-scan rows (default: {d.rows})")
    p.add_argument("--cols", type=int, default=d.cols, help=f"positions per row (default: {d.cols})")
    p.add_argument("--step", type=float, default=d.step, help=f"step between positions, px (default: {d.step})")
    p.add_argument("--nphotons", type=float, default=d.nphotons, help=f"incident photons per pattern (default: {d.nphotons:g})")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    a = p.parse_args(argv)
    if a.out.exists() and not a.force:
        raise InputError(a.out, "exists; pass --force to overwrite it")
    spec = ScanSpec(n=a.n, rows=a.rows, cols=a.cols, step=a.step, nphotons=a.nphotons, seed=a.seed,
                    object_seed=a.object_seed)
    write_npz(a.out, simulate(spec))


if __name__ == "__main__":
    run(main)
