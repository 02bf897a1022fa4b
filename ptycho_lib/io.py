"""File I/O shared by every stage: safe NPZ reading, deterministic atomic writing."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import mmap
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
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


ZIP_BOMB_RATIO = 500  # deflate tops out near 1032:1, reached only by constant data
ZIP_BOMB_MIN_BYTES = 64 << 20  # small members may compress as well as they like


def human_bytes(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by RLIMIT_AS."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            avail = soft if avail is None else min(avail, soft)
    except (ImportError, ValueError, OSError):
        pass
    return avail


def _check_zip_sizes(path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse, from the zip directory alone, archives that would expand beyond reason."""
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise InputError(path, "holds the same member name twice; refusing an ambiguous archive")
    for info in infos:
        if info.flag_bits & 0x1:
            raise InputError(path, f"member {info.filename!r} is encrypted; refusing")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > ZIP_BOMB_MIN_BYTES and ratio > ZIP_BOMB_RATIO:
            raise InputError(path, f"member {info.filename!r} would expand {ratio:.0f}x, from "
                             f"{human_bytes(info.compress_size)} to {human_bytes(info.file_size)} "
                             "(a zip bomb?); refusing to decompress it")


def _check_memory(path, headers: dict, max_bytes: int | None, copies: int) -> None:
    """Refuse, from the .npy headers, arrays whose loading and the `copies` float64
    copies the caller makes of each would not fit in `max_bytes`."""
    total = sum(math.prod(shape) * (dtype.itemsize + copies * max(dtype.itemsize, 8))
                for shape, _, dtype, _ in headers.values())
    if max_bytes is not None and total > max_bytes:
        raise InputError(path, f"needs {human_bytes(total)} of memory to load, more than the "
                         f"{human_bytes(max_bytes)} available; refusing")


def _npy_header(path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple:
    """Check one member's .npy header against the bytes the zip says it holds, before
    anything is allocated: no object dtype, no shape larger than the member. Returns
    (shape, fortran order, dtype, header bytes)."""
    name = info.filename
    if not name.endswith(".npy"):
        raise InputError(path, f"member {name!r} is not a .npy array")
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(path, f"member {name!r} has no valid .npy header ({e})") from None
        header_bytes = f.tell()
    if dtype.hasobject:
        raise InputError(path, f"member {name!r} is an object (pickled) array; refusing to load it")
    nbytes = math.prod(shape) * dtype.itemsize
    if header_bytes + nbytes != info.file_size:
        raise InputError(path, f"member {name!r} claims shape {shape} of {dtype} ({human_bytes(nbytes)}) "
                         f"but holds {human_bytes(max(info.file_size - header_bytes, 0))} of data; refusing")
    return shape, fortran, dtype, header_bytes


def read_npz(path, max_bytes: int | None = -1, mmap_keys=(), copies: int = 0) -> dict[str, np.ndarray]:
    """Read every array of an NPZ without ever unpickling (object arrays are refused).

    Sizes are checked before anything is allocated: the zip directory (zip bombs), each
    member's .npy header (a shape larger than the member's bytes) and the memory all
    members need, with `copies` float64 copies of each that the caller will make, at
    most `max_bytes` (-1 = the memory available). Members named in `mmap_keys` that are
    stored uncompressed come back as read-only memory maps of the file (their CRC is
    checked first, reading the file in blocks; they do not count against `max_bytes`);
    compressed ones are read into memory as usual."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise InputError(path, "not an NPZ file (no zip signature)")
    if max_bytes == -1:
        max_bytes = available_memory()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            mapped = {i.filename for i in infos if i.filename[:-4] in mmap_keys and _mappable(i)}
            _check_zip_sizes(path, infos)
            headers = {info.filename: _npy_header(path, zf, info) for info in infos}
            _check_memory(path, {k: h for k, h in headers.items() if k not in mapped}, max_bytes, copies)
            out = {}
            for info in infos:
                if info.filename in mapped:
                    out[info.filename[:-4]] = _map_member(path, info, *headers[info.filename])
                    continue
                with zf.open(info) as f:
                    out[info.filename[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except (zipfile.BadZipFile, EOFError) as e:
        raise InputError(path, f"not a readable NPZ file: damaged or truncated zip archive ({e})") from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable NPZ file ({e})") from None


def _mappable(info: zipfile.ZipInfo) -> bool:
    """Stored as plain bytes: uncompressed, unencrypted."""
    return info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1 and \
        info.compress_size == info.file_size


def _map_member(path, info: zipfile.ZipInfo, shape, fortran, dtype, header_bytes) -> np.ndarray:
    """A read-only array over an uncompressed member's bytes in the file, after checking
    where the local header puts them and their CRC-32 (what zipfile checks on reading)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"Bad magic number for file header of {info.filename!r}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > size:
            raise zipfile.BadZipFile(f"member {info.filename!r} extends past the end of the file")
        f.seek(start)
        crc, left = 0, info.file_size
        while left:
            block = f.read(min(left, 16 << 20))
            if not block:
                raise zipfile.BadZipFile(f"member {info.filename!r} extends past the end of the file")
            crc, left = zlib.crc32(block, crc), left - len(block)
        if crc != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        whole = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.ndarray(shape, dtype, buffer=whole, offset=start + header_bytes, order="F" if fortran else "C")


def release_pages(array: np.ndarray) -> None:
    """Drop the pages under `array`, a view of a map made by read_npz(mmap_keys=...),
    from this process's resident memory once it has been read (they stay in the page
    cache; reading them again costs a minor fault). Streaming readers call it after
    each batch so that memory does not grow with the file. No-op for other arrays."""
    base = array
    while isinstance(base, np.ndarray) and not isinstance(base.base, mmap.mmap):
        base = base.base
    if not isinstance(base, np.ndarray) or array.size == 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return
    whole = base.base
    origin = np.frombuffer(whole, np.uint8).ctypes.data
    lo = array.ctypes.data - origin
    hi = lo + array.nbytes if array.flags.c_contiguous else len(whole)
    lo = lo // mmap.PAGESIZE * mmap.PAGESIZE
    hi = min(-(-hi // mmap.PAGESIZE) * mmap.PAGESIZE, len(whole))
    whole.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


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
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data reach the disk before the name does: a crash leaves old or new
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_full(e, target.parent):
            raise InputError(target, "cannot be written: no space left on the device (free some space and "
                             "rerun)") from None
        raise


def _disk_full(e: BaseException, folder: Path) -> bool:
    """A write that failed for want of space (torch's writer says only 'file write
    failed': then the free space decides)."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, RuntimeError) and "write failed" in str(e) and shutil.disk_usage(folder).free < 16 << 20


def write_npz(path, arrays: dict[str, np.ndarray], stored=()) -> None:
    """Write an NPZ whose bytes depend only on the arrays (fixed member dates, sorted
    keys), atomically. Members named in `stored` are written uncompressed, their data
    64-byte aligned in the file, so that readers can memory-map them
    (read_npz(mmap_keys=...)); the others are deflated."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            a = np.asarray(arrays[key])  # (ascontiguousarray would make 0-d arrays 1-d)
            np.lib.format.write_array(buf, a if a.flags.c_contiguous else a.copy(), allow_pickle=False)
            name = f"{key}.npy"
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if key in stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            if key in stored:
                # an extra field of padding (id 0xD935, as zipalign uses) puts the .npy
                # at a multiple of 64 bytes; its header is a multiple of 64 long
                pad = -(zf.fp.tell() + 30 + len(name) + 4) % 64
                info.extra = struct.pack("<HH", 0xD935, pad) + bytes(pad)
            zf.writestr(info, buf.getvalue())


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
