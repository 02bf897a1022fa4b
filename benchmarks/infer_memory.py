"""Peak memory of inference versus scan size M, up to 100,000 patterns.

    python benchmarks/infer_memory.py                          # M = 1000, 10000, 100000
    python benchmarks/infer_memory.py --ms 1000 30000 --arch '{"width": 8}'

For each M a canonical NPZ is written first (copies of a 1000-pattern scan simulated
with the fixture's probe and geometry, tiled side by side with jittered positions;
100,000 x 64 x 64 float32 = 1.6 GB, under --dir), then a fresh Python process
reconstructs it as the infer stage does (load_scan(mmap=True), reconstruct with the
default settings) and the parent reads that child's peak resident set size from
os.wait4 (ru_maxrss: every page the process touched, memory-mapped file pages
included). Beside it, in the same invocation:
  - 'idle': a child that imports everything and builds the network, nothing more
    (the floor every run pays);
  - 'in-memory' (up to --reference-up-to patterns): the patterns read into memory
    and every patch kept in memory, as inference worked before streaming.
The network is the default PtychoNet with random weights unless --bundle/--arch say
otherwise; its speed does not change the memory figures.

Prints the machine and a table; writes JSON (--out). Target: <= 4 GB at M = 100,000.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


TARGET_BYTES = 4e9


def child(a) -> None:
    """Runs in the measured process: reconstruct one file, print a JSON line."""
    import numpy as np
    import torch

    import scans
    from ptycho_lib.config import InferConfig
    from ptycho_lib.scan import load_scan
    from ptycho_lib.reconstruct import reconstruct

    torch.set_num_threads(a.threads)
    net, _ = scans.network(a.bundle, a.arch)
    out = {"mode": a.mode}
    if a.mode != "idle":
        t = time.perf_counter()
        scan = load_scan(a.child, mmap=a.mode == "streaming")
        timings = {}
        rec = reconstruct(net, scan, InferConfig(), "cpu", timings=timings,
                          **({"patch_memory": 1 << 62} if a.mode == "in-memory" else {}))
        out.update(seconds=time.perf_counter() - t, m=len(scan.x), canvas=list(rec.object.shape),
                   lit_fraction=float(np.mean(rec.weight > 0)), **{f"{k}_s": v for k, v in timings.items()})
    print(json.dumps(out), flush=True)


def measure(path: Path | None, mode: str, a) -> dict:
    """Run one child and return its report with its peak RSS."""
    cmd = [sys.executable, __file__, "--child", str(path or ""), "--mode", mode, "--threads", str(a.threads)]
    cmd += ["--bundle", a.bundle] if a.bundle else []
    cmd += ["--arch", a.arch] if a.arch else []
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed on {path} (exit {proc.returncode})")
    report = json.loads(out.strip().splitlines()[-1])
    report.update(peak_rss_bytes=usage.ru_maxrss * 1024, wall_s=time.perf_counter() - t)
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ms", type=int, nargs="+", default=[1000, 10000, 100000], help="scan sizes M")
    p.add_argument("--reference-up-to", type=int, default=10000,
                   help="also run the in-memory reference for M up to this (it needs ~50 kB a pattern)")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the scans are written")
    p.add_argument("--bundle", help="model bundle whose network to run")
    p.add_argument("--arch", help="PtychoNet keyword arguments as JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks") / "infer_memory.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="streaming", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        return child(a)

    import torch

    import scans

    torch.set_num_threads(a.threads)
    info = scans.machine("cpu")
    scans.print_machine(info)
    print(f"network: {scans.network(a.bundle, a.arch)[1]}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=a.dir) as work:
        base = scans.fixture_like()
        idle = measure(None, "idle", a)
        print(f"  idle (imports + network): peak RSS {idle['peak_rss_bytes'] / 1e6:8.0f} MB", flush=True)
        rows.append(idle)
        for m in sorted(a.ms):
            t = time.perf_counter()
            path = scans.write_tiled(Path(work) / f"m{m}.npz", base, m)
            made = time.perf_counter() - t
            print(f"M {m}: wrote {path.stat().st_size / 1e9:.2f} GB in {made:.1f} s", flush=True)
            modes = ["streaming"] + (["in-memory"] if m <= a.reference_up_to else [])
            for mode in modes:
                r = measure(path, mode, a)
                r["file_bytes"] = path.stat().st_size
                rows.append(r)
                print(f"  {mode:10s} M {m:7d}: peak RSS {r['peak_rss_bytes'] / 1e6:8.0f} MB, {r['seconds']:7.1f} s "
                      f"({m / r['seconds']:.0f} patterns/s), canvas {r['canvas'][0]} x {r['canvas'][1]}", flush=True)
            path.unlink()
    info["load_average_at_end"] = list(os.getloadavg())
    print(f"\n{'mode':>10} {'M':>7} {'peak RSS MB':>12} {'seconds':>8} {'patterns/s':>11}")
    for r in rows:
        if r["mode"] == "idle":
            print(f"{'idle':>10} {'-':>7} {r['peak_rss_bytes'] / 1e6:12.0f}")
            continue
        print(f"{r['mode']:>10} {r['m']:7d} {r['peak_rss_bytes'] / 1e6:12.0f} {r['seconds']:8.1f} "
              f"{r['m'] / r['seconds']:11.0f}")
    big = max((r for r in rows if r["mode"] == "streaming"), key=lambda r: r["m"])
    print(f"\nstreaming peak at M = {big['m']}: {big['peak_rss_bytes'] / 1e9:.2f} GB "
          f"(target <= {TARGET_BYTES / 1e9:.0f} GB: {'met' if big['peak_rss_bytes'] <= TARGET_BYTES else 'NOT met'})")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": info, "runs": rows, "target_bytes": TARGET_BYTES}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
