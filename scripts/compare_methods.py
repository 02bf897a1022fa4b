"""compare_methods: one table of the methods' scores and wall times for a scan, and a
figure of their FRC curves beside that table.

    python -m scripts.compare_methods results/metrics/fly001.json \
        --metrics results/metrics/{recon,baseline,refined}/fly001.json \
        --timings logs/timings/{recon,baseline,refined}/fly001.tsv \
        [--figure results/metrics/fly001.png]

Each method is named by its metrics file's folder (recon, baseline, refined). Scans
without a reference object have no SSIM, PSNR or FRC: the table then holds the figures
that need none (the Poisson NLL per photon, held out where a method holds patterns out).
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from ptycho_lib.cli import run
from ptycho_lib.io import atomic_path, write_json
from ptycho_lib.provenance import record
from ptycho_lib.render import plot_frc

SCORES = ("amplitude_ssim", "phase_ssim", "amplitude_psnr", "phase_psnr", "frc_resolution_cycles_per_pixel",
          "nll_per_photon")
OPTIONAL = ("heldout_nll_per_photon",)  # the methods that hold patterns out
# SCORES but nll_per_photon need a reference object


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("summary", type=Path, help="JSON to write")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="results/metrics/STAGE/NAME.json files")
    p.add_argument("--timings", type=Path, nargs="*", default=[], help="Snakemake benchmark TSVs, same order")
    p.add_argument("--figure", type=Path, help="PNG of the FRC curves and the table (optional)")
    p.add_argument("--title", default=None, help="figure title (default: the summary's name)")
    a = p.parse_args(argv)
    table, curves = {}, {}
    for i, path in enumerate(a.metrics):
        scores = json.loads(path.read_text())
        row = {k: scores[k] for k in (*SCORES, *OPTIONAL) if k in scores}
        if i < len(a.timings):
            with open(a.timings[i]) as f:
                row["stage_wall_s"] = float(next(csv.DictReader(f, delimiter="\t"))["s"])
        name = path.parent.name
        table[name] = row
        if "frc" in scores:
            curves[name] = scores["frc"]
    if a.figure:
        with atomic_path(a.figure) as tmp:
            plot_frc(curves, table, a.title or a.summary.stem, tmp)
        record(a.figure, "compare_methods", {f"metrics_{i}": m for i, m in enumerate(a.metrics)})
    write_json(a.summary, table)
    record(a.summary, "compare_methods", {f"metrics_{i}": m for i, m in enumerate(a.metrics)})
    for name, row in table.items():
        print(f"{name:10s} " + " ".join(f"{k}={v:.3f}" for k, v in row.items()), file=sys.stderr)


if __name__ == "__main__":
    run(main)
