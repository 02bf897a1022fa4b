"""Provenance sidecars: `<output>.prov.json` beside every stage output.

The outputs themselves hold no timestamps, hosts or absolute paths, so the same
inputs give the same bytes; what made them (input SHA-256s, the settings, library
and package versions, the git commit when the code is a git checkout, the time) goes
into the sidecar, which is written after the output and names its SHA-256.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path

from . import __version__
from .io import sha256_file, write_json

SUFFIX = ".prov.json"
CODE_ROOT = Path(__file__).resolve().parents[1]


def sidecar_path(output) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def git_commit(root: Path = CODE_ROOT) -> str | None:
    """HEAD of the checkout holding this library ('+dirty' with uncommitted changes to
    tracked files), or None when it is not a git checkout or git is missing."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None
        head = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def _packages() -> dict:
    """Versions of the numerical packages this process has loaded."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "lightning", "h5py", "matplotlib"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "unknown")
    return out


def record(output, stage: str, inputs: dict, config: dict | None = None, extra: dict | None = None) -> Path:
    """Write the sidecar of `output`: inputs maps a role to a path (hashed here) or to
    a ready dict; config holds the settings the stage used."""
    output = Path(output)
    described = {}
    for role, value in inputs.items():
        if isinstance(value, dict):
            described[role] = value
        else:
            described[role] = {"path": str(value), "sha256": sha256_file(value)}
    record = {
        "output": {"path": str(output), "sha256": sha256_file(output)},
        "stage": stage,
        "inputs": described,
        "config": config or {},
        "library_version": __version__,
        "git_commit": git_commit(),
        "packages": _packages(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    path = sidecar_path(output)
    write_json(path, record)
    return path
