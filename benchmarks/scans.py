"""Shared by the benchmarks: the machine description every benchmark prints, scans
with the fixture's probe and geometry, and large synthetic scans tiled from one.

Not a benchmark itself (it prints nothing); the scripts beside it import it.
"""

from __future__ import annotations

import json
import os
import platform
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from ptycho_lib.contract import canonicalise
from ptycho_lib.io import write_npz
from ptycho_lib.model import PtychoNet
from ptycho_lib.simulate import ScanSpec, simulate


def machine(device: str = "cpu") -> dict:
    """What the figures were measured on (printed and stored with them)."""
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu": cpu,
            "torch_threads": torch.get_num_threads(), "device": device, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg())}


def print_machine(info: dict) -> None:
    print(f"machine: {info['cpus_usable']} usable of {info['cpu_count']} CPUs ({info['cpu']}), "
          f"{info['torch_threads']} torch threads, device {info['device']}, torch {info['torch']}, "
          f"load average {' '.join(f'{v:.1f}' for v in info['load_average_at_start'])}", flush=True)


def fixture_like(rows: int = 40, cols: int = 25, seed: int = 1) -> dict:
    """A canonical scan of rows x cols positions simulated with the fixture's probe,
    pattern size, step and dose (scripts/make_fixture.py defaults); 40 x 25 = 1000."""
    spec = ScanSpec(rows=rows, cols=cols, seed=seed)
    return canonicalise(simulate(spec), f"simulated_{rows}x{cols}.npz")


def write_canonical(path, canonical: dict) -> Path:
    """As transpose writes it: patterns stored uncompressed (memory-mappable)."""
    write_npz(path, canonical, stored=("diffraction",))
    return Path(path)


def write_tiled(path, base: dict, m: int, seed: int = 0, chunk: int = 4096) -> Path:
    """A canonical NPZ of m patterns: copies of `base` laid side by side as tiles of a
    larger scan (one scan step apart), positions jittered by 0.35 px. Written member
    by member and the patterns chunk by chunk, so making 100,000 patterns (1.6 GB)
    takes seconds and little memory. No objectGuess: the canvas follows the positions."""
    rng = np.random.default_rng(seed)
    d = base["diffraction"]
    mb, n = len(d), d.shape[-1]
    x0, y0 = base["xcoords"], base["ycoords"]
    step = 8.0
    width, height = np.ptp(x0) + step, np.ptp(y0) + step
    tiles = -(-m // mb)
    per_row = int(np.ceil(np.sqrt(tiles * height / width)))  # a roughly square scan
    t = np.arange(tiles)
    tx = np.repeat((t % per_row) * width, mb)[:m]
    ty = np.repeat((t // per_row) * height, mb)[:m]
    x = np.tile(x0, tiles)[:m] + tx + rng.normal(0, 0.35, m)
    y = np.tile(y0, tiles)[:m] + ty + rng.normal(0, 0.35, m)
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("diffraction.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        header = _npy_header((m, n, n), "<f4")
        info.file_size = len(header) + m * n * n * 4
        with zf.open(info, "w") as f:
            f.write(header)
            for s in range(0, m, chunk):
                idx = np.arange(s, min(s + chunk, m)) % mb
                f.write(np.ascontiguousarray(d[idx], np.float32).tobytes())
        for key, value in (("probeGuess", base["probeGuess"]), ("xcoords", x), ("ycoords", y),
                           ("nphotons", base["nphotons"]), ("scan_index", np.arange(m, dtype=np.int64))):
            buf = _npy_bytes(np.asarray(value))
            member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(member, buf)
    return Path(path)


def _npy_header(shape, descr: str) -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    pad = 64 - (10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def network(bundle: str | None, arch: str | None, n: int = 64) -> tuple[PtychoNet, str]:
    """The network to time and how it was made: a trained bundle (its architecture and
    weights), or PtychoNet(n, **arch) with random weights (throughput does not depend
    on the weights; the output layer is randomised so patches vary and the phase
    alignment has work to do)."""
    if bundle:
        from ptycho_lib.bundle import load_network

        net, manifest = load_network(bundle, n=n)
        return net, f"bundle {bundle}: {json.dumps(manifest.get('architecture'))}"
    kwargs = json.loads(arch) if arch else {}
    torch.manual_seed(0)
    net = PtychoNet(n=n, **kwargs).eval()
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    if not last.weight.any():  # a zero-initialised output layer: every patch would be flat
        torch.nn.init.normal_(last.weight, std=0.05)
    params = sum(p.numel() for p in net.parameters())
    return net, f"PtychoNet(n={n}, **{kwargs}) random init, {params / 1e6:.2f} M parameters"
