"""The bad-input corpus: malformed raw scans made on the fly from the tiny simulated scan
(never committed as binaries). Each case writes one file and names the problem the
pipeline must report for it; WARN cases are unusual but usable and must go through.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np

BOMB_BYTES = 1 << 30  # what the zip bomb expands to, from about 1 MB


def _npz(path: Path, arrays: dict, allow_pickle=False) -> None:
    np.savez(path, **arrays, allow_pickle=allow_pickle)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """Write a zip by hand from (name, deflated bytes, crc32, uncompressed size, method)
    so that a member's data can be a stream that zipfile would never produce."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size, method in members:
        offset = len(out)
        fields = (20, 0, method, 0, 0x21, crc, len(data), size, len(name), 0)
        out += b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", *fields) + name.encode() + data
        central += (b"PK\x01\x02" + struct.pack("<HHHHHHIIIHHHHHII", 20, *fields, 0, 0, 0, 0, offset)
                    + name.encode())
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + b"PK\x05\x06" + end))


def _deflated(name: str, payload: bytes):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return name, c.compress(payload) + c.flush(), zlib.crc32(payload), len(payload), 8


@functools.cache
def _bomb_member() -> tuple:
    """diff3d.npy: a valid uint16 header and BOMB_BYTES of zeros, deflated at ~1000:1.
    Blocks of zeros are compressed once and repeated (a full flush makes each block
    self-contained), so making it costs a fraction of a second."""
    block = bytes(64 << 20)
    count = BOMB_BYTES // len(block)
    header = _header_for((BOMB_BYTES // 2048, 32, 32), "<u2")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    data = head + body * count + b"\x03\x00"  # an empty final block ends the stream
    return "diff3d.npy", data, crc, len(header) + count * len(block), 8


def _header_for(shape, descr: str) -> bytes:
    """A version 1.0 .npy header (magic + padded dict) for the given shape and dtype."""
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    pad = 64 - (10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


def _members(raw: dict, skip=()) -> list:
    return [_deflated(f"{k}.npy", _npy_bytes(v)) for k, v in raw.items() if k not in skip]


class Pickled:
    """Unpickling this creates the file `marker`: proof that something was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _with(raw, **changes):
    out = {k: v for k, v in raw.items() if k not in changes}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def _patterns(raw, transform, dtype=None):
    d = raw["diff3d"].astype(dtype or np.float64)
    return _with(raw, diff3d=transform(d))


def _set(a, index, value):
    a = a.copy()
    a[index] = value
    return a


def _make(kind):
    """Decorator registry: CASES[name] = (writer(raw, path), expected message fragment)."""
    def register(message):
        def deco(fn):
            kind[fn.__name__] = (fn, message)
            return fn
        return deco
    return register


CASES: dict = {}
WARN: dict = {}
bad = _make(CASES)
warn = _make(WARN)


@bad("not an NPZ file (no zip signature)")
def not_npz(raw, path):
    path.write_text("x,y,counts\n1,2,3\n")


@bad("damaged or truncated zip archive")
def truncated_zip(raw, path):
    _npz(path, raw)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@bad("Bad CRC-32")
def corrupted_member(raw, path):
    _npz(path, raw)  # stored, not deflated: flip one byte of the patterns
    data = bytearray(path.read_bytes())
    data[data.index(b"diff3d.npy") + 4000] ^= 0xFF
    path.write_bytes(bytes(data))


@bad("file is empty")
def empty_file(raw, path):
    path.write_bytes(b"")


@bad("no diffraction data: expected the key 'diffraction' (or legacy 'diff3d')")
def missing_diffraction(raw, path):
    _npz(path, _with(raw, diff3d=None))


@bad("holds both 'diffraction' and 'diff3d'")
def both_diffraction_keys(raw, path):
    _npz(path, _with(raw, diffraction=np.moveaxis(raw["diff3d"], -1, 0)))


@bad("missing required key 'probeGuess'")
def missing_probe(raw, path):
    _npz(path, _with(raw, probeGuess=None))


@bad("missing required key 'ycoords'")
def missing_coordinates(raw, path):
    _npz(path, _with(raw, ycoords=None))


@bad("xcoords has 35 entries but ycoords has 36")
def coordinates_disagree(raw, path):
    _npz(path, _with(raw, xcoords=raw["xcoords"][:-1]))


@bad("does not hold one pattern per position: xcoords/ycoords give 30 positions")
def coordinates_fewer_than_patterns(raw, path):
    _npz(path, _with(raw, xcoords=raw["xcoords"][:30], ycoords=raw["ycoords"][:30]))


@bad("patterns are 32x30, not square")
def non_square_patterns(raw, path):
    _npz(path, _with(raw, diff3d=raw["diff3d"][:, :30]))


@bad("has shape (32, 32); expected a 3-D stack of patterns")
def stack_2d(raw, path):
    _npz(path, _with(raw, diff3d=raw["diff3d"][:, :, 0]))


@bad("has shape (1, 32, 32, 36); expected a 3-D stack of patterns")
def stack_4d(raw, path):
    _npz(path, _with(raw, diff3d=raw["diff3d"][None]))


@bad("'diff3d' contains NaN or Inf")
def nan_patterns(raw, path):
    _npz(path, _patterns(raw, lambda d: _set(d, (3, 4, 5), np.nan)))


@bad("'diff3d' contains NaN or Inf")
def inf_patterns(raw, path):
    _npz(path, _patterns(raw, lambda d: _set(d, (3, 4, 5), np.inf), np.float32))


@bad("'diff3d' has negative values (min -1)")
def negative_amplitudes(raw, path):
    _npz(path, _patterns(raw, lambda d: _set(np.sqrt(d), (1, 2, 3), -1.0)))


@bad("'diff3d' has dtype complex128; expected real numbers")
def complex_patterns(raw, path):
    _npz(path, _patterns(raw, lambda d: np.sqrt(d) * np.exp(0.3j)))


@bad("'diff3d' has dtype <U5; expected real numbers")
def string_patterns(raw, path):
    _npz(path, _with(raw, diff3d=raw["diff3d"].astype("U5")))


@bad("'xcoords' must be a 1-D array of real numbers, got <U")
def string_coordinates(raw, path):
    _npz(path, _with(raw, xcoords=raw["xcoords"].astype(str)))


@bad("'ycoords' contains NaN or Inf")
def nan_coordinates(raw, path):
    _npz(path, _with(raw, ycoords=_set(raw["ycoords"], 7, np.nan)))


@bad("patterns are 32x32 but probeGuess is 16x16")
def probe_wrong_size(raw, path):
    _npz(path, _with(raw, probeGuess=raw["probeGuess"][8:24, 8:24]))


@bad("'probeGuess' is not finite or is all zero")
def probe_all_zero(raw, path):
    _npz(path, _with(raw, probeGuess=np.zeros_like(raw["probeGuess"])))


@bad("patterns are 24x24; the network needs N to be a multiple of 16")
def pattern_size_not_multiple_of_16(raw, path):
    _npz(path, _with(raw, diff3d=raw["diff3d"][4:28, 4:28], probeGuess=raw["probeGuess"][4:28, 4:28]))


@bad("puts its 32x32 window outside the 61x62 objectGuess")
def positions_outside_object(raw, path):
    _npz(path, _with(raw, xcoords=raw["xcoords"] + 40))


@bad("only 1 pattern; ptychography needs overlapping positions")
def single_pattern(raw, path):
    _npz(path, _with(raw, diff3d=raw["diff3d"][:, :, :1], xcoords=raw["xcoords"][:1], ycoords=raw["ycoords"][:1]))


@bad("is an object (pickled) array; refusing to load it")
def pickled_object_array(raw, path):
    marker = path.with_name(path.stem + ".EXECUTED")
    _npz(path, _with(raw, meta=np.array([Pickled(marker)], dtype=object)), allow_pickle=True)


@bad("member 'notes.txt' is not a .npy array")
def foreign_member(raw, path):
    _raw_zip(path, _members(raw) + [_deflated("notes.txt", b"hello")])


@bad("claims shape (1073741824, 32, 32) of uint16 (2.2 TB) but holds 4.1 kB of data; refusing")
def header_claims_terabytes(raw, path):
    header = _header_for((1 << 30, 32, 32), "<u2")
    _raw_zip(path, _members(raw, skip=("diff3d",)) + [_deflated("diff3d.npy", header + bytes(4096))])


@bad("to 1.1 GB (a zip bomb?); refusing to decompress it")
def zip_bomb(raw, path):
    _raw_zip(path, _members(raw, skip=("diff3d",)) + [_bomb_member()])


@warn("1 of 36 positions duplicate another; they add no new overlap")
def duplicate_positions(raw, path):
    _npz(path, _with(raw, xcoords=_set(raw["xcoords"], 5, raw["xcoords"][4]),
                     ycoords=_set(raw["ycoords"], 5, raw["ycoords"][4])))


@warn("sparse overlap: neighbouring positions are")
def sparse_overlap(raw, path):
    _npz(path, _with(raw, objectGuess=None, xcoords=raw["xcoords"] * 5, ycoords=raw["ycoords"] * 5))


def write_case(name: str, raw: dict, directory: Path) -> Path:
    writer = (CASES.get(name) or WARN[name])[0]
    path = Path(directory) / f"{name}.npz"
    writer(raw, path)
    return path
