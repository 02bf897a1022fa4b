"""File I/O shared by every stage: safe NPZ reading, deterministic atomic writing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class InputError(Exception):
    """A problem with a user's file; printed as one line `path: problem`."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_npz(path) -> dict[str, np.ndarray]:
    """Read every array of an NPZ without ever unpickling (object arrays are refused)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise InputError(path, "not an NPZ file (no zip signature)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as e:
        if "Object arrays" in str(e) or "pickled" in str(e):
            raise InputError(path, "contains an object (pickled) array; refusing to load it") from None
        raise InputError(path, f"not a readable NPZ file ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(path, f"not a readable NPZ file ({e})") from None


@contextmanager
def atomic_path(target):
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Write an NPZ whose bytes depend only on the arrays (fixed member dates, sorted
    keys), atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            a = np.asarray(arrays[key])  # (ascontiguousarray would make 0-d arrays 1-d)
            np.lib.format.write_array(buf, a if a.flags.c_contiguous else a.copy(), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
