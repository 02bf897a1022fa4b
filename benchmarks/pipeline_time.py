"""Wall time of the main job from a fresh clone, and of Snakemake's no-op rerun.

    python benchmarks/pipeline_time.py                       # results/recon/fly001.png
    python benchmarks/pipeline_time.py --no-main             # only the no-op rerun after a
                                                             # cheap target (canonical file)
    python benchmarks/pipeline_time.py -- --config train='{max_epochs: 2}'   # extra snakemake args

Clones this repository's committed HEAD (git clone: only committed work counts) into
a temporary directory, runs `snakemake --cores 8 TARGET` there with this Python's
Snakemake and environment (the venv: no install is timed), then the same command
again, which must do nothing; a dry run (-n) is timed too. Each stage's own time
comes from Snakemake's benchmark files. Prints the machine and the times; writes
JSON (--out).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scans

REPO = Path(__file__).resolve().parents[1]


def snakemake(work: Path, *args) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=work, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def stage_times(work: Path) -> dict:
    """Seconds per job from Snakemake's benchmark: files (benchmarks/RULE/WILDCARDS.tsv)."""
    out = {}
    for tsv in sorted((work / "benchmarks").glob("*/*.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        out[f"{tsv.parent.name}/{tsv.stem}"] = float(row["s"])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="results/recon/fly001.png")
    p.add_argument("--cores", type=int, default=8)
    p.add_argument("--no-main", action="store_true",
                   help="build only results/canonical/fly001.npz (seconds), then time the no-op rerun")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks") / "pipeline_time.json")
    p.add_argument("extra", nargs="*", help="further snakemake arguments (after --)")
    a = p.parse_args()
    target = "results/canonical/fly001.npz" if a.no_main else a.target
    info = scans.machine("cpu")
    scans.print_machine(info)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(work)], check=True)
        print(f"cloned {commit[:12]} into {work}", flush=True)
        dry, _ = snakemake(work, "-n", "--cores", str(a.cores), target, *a.extra)
        print(f"dry run (-n) of {target}: {dry:.1f} s", flush=True)
        main_s, _ = snakemake(work, "--cores", str(a.cores), target, *a.extra)
        print(f"snakemake --cores {a.cores} {target} {' '.join(a.extra)}: {main_s:.1f} s", flush=True)
        stages = stage_times(work)
        for name, s in stages.items():
            print(f"  {name:28s} {s:7.1f} s")
        noop, log = snakemake(work, "--cores", str(a.cores), target, *a.extra)
        nothing = "Nothing to be done" in log
        print(f"no-op rerun: {noop:.1f} s ({'nothing was run' if nothing else 'SOMETHING RAN'})", flush=True)
    info["load_average_at_end"] = list(os.getloadavg())
    out = {"machine": info, "commit": commit, "target": target, "cores": a.cores, "extra": a.extra, "dry_run_s": dry,
           "main_job_s": main_s, "stages_s": stages, "noop_rerun_s": noop, "noop_did_nothing": nothing}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
