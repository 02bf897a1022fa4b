"""HDF5 input that cannot read outside its own folder, or more memory than there is.

HDF5 follows links on its own: an external link, a soft link to one, a virtual
dataset (VDS) or external raw storage can make a small file hand over the bytes of
any file the process can read, and Snakemake would not see that file change. Here
every link on the way to a dataset is walked one component at a time: soft links are
resolved by this code (a chain longer than MAX_LINKS is a loop), external links are
opened by this code and only when the target is a file in the same folder as the
scan's file (the detector master file and its data files, as Eiger/NeXus writers
lay them out), VDS sources must be existing datasets in that folder reached by
hard links, and external raw storage is refused. `files` lists every file read,
for the checksum pin and for the workflow's rerun logic.

Every read is checked against the memory available first (`read`), counting the
copies the caller will make, so a file that declares a huge array fails in one line
before anything is allocated.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the detector compression filters: Bitshuffle/LZ4, Zstd, Blosc ...)
import numpy as np

from .io import InputError, available_memory, human_bytes

MAX_LINKS = 16  # soft and external links followed on the way to one object
FILTER_HINT = "damaged data, or a compression filter that hdf5plugin does not provide"


class ConfinedFile:
    """An HDF5 file opened read-only, whose datasets are found by `dataset` without
    leaving its folder; use as a context manager."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "file not found")
        self.folder = self.path.resolve().parent
        self._open: dict[Path, h5py.File] = {}
        self.root = self._file(self.path.resolve())

    def __enter__(self) -> ConfinedFile:
        return self

    def __exit__(self, *exc) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()

    @property
    def files(self) -> list[Path]:
        """Every file opened so far, the scan's own first."""
        return list(self._open)

    def _file(self, resolved: Path) -> h5py.File:
        if resolved not in self._open:
            try:
                self._open[resolved] = h5py.File(resolved, "r", locking=False)
            except OSError as e:
                what = "" if resolved == self.path.resolve() else f"linked file {resolved.name} is "
                raise InputError(self.path, f"{what}not a readable HDF5 file ({e})") from None
        return self._open[resolved]

    def _inside(self, name: str, from_file: h5py.File, what: str) -> Path:
        """The file a link names, when it lies in the scan's folder (relative names are
        taken from the folder of the file holding the link; '.' is that file)."""
        if name == ".":
            return Path(from_file.filename).resolve()
        if "%" in name:
            raise InputError(self.path, f"{what} names files by a pattern ({name!r}); refusing")
        target = (Path(from_file.filename).parent / name).resolve()
        if target.parent != self.folder:
            raise InputError(self.path, f"{what} points to {name}, outside the folder {self.folder}; "
                             "refusing to read it (keep a master file and its data files in one folder)")
        if not target.is_file():
            raise InputError(self.path, f"{what} points to {name}, which does not exist")
        return target

    def dataset(self, name: str, what: str) -> h5py.Dataset | None:
        """The dataset at `name` (None when there is nothing there), after checking
        every link on the way and where its data are stored."""
        item = self._walk(self.root, name, f"{what} /{name}", 0)
        if item is None:
            return None
        if not isinstance(item, h5py.Dataset):
            raise InputError(self.path, f"{what} /{name} is a group, not a dataset")
        return self._checked_storage(item, f"{what} /{name}")

    def _walk(self, group, name: str, what: str, links: int, hard_only=False):
        """The object at `name` from `group` (absolute names from its file's root),
        resolving each link here; None when absent."""
        if name.startswith("/"):
            group = group.file["/"]
        item = group
        for part in [p for p in name.split("/") if p not in ("", ".")]:
            if not isinstance(item, h5py.Group):
                return None
            try:
                link = item.get(part, getlink=True)
            except (KeyError, ValueError, OSError, RuntimeError):
                link = None
            if link is None:
                return None
            if isinstance(link, h5py.HardLink):
                item = item[part]
                continue
            if hard_only:
                raise InputError(self.path, f"{what}: the virtual dataset's source is reached through a link; "
                                 "refusing")
            if links >= MAX_LINKS:
                raise InputError(self.path, f"{what}: more than {MAX_LINKS} links on the way (a soft-link loop?)")
            if isinstance(link, h5py.SoftLink):
                item = self._walk(item, link.path, what, links + 1)
            elif isinstance(link, h5py.ExternalLink):
                f = self._file(self._inside(link.filename, item.file, f"{what}: external link /{part}"))
                item = self._walk(f["/"], link.path, what, links + 1)
            else:
                raise InputError(self.path, f"{what}: /{part} is a user-defined link; refusing")
            if item is None:
                raise InputError(self.path, f"{what}: link /{part} leads nowhere (a dangling link)")
        return item

    def _checked_storage(self, ds: h5py.Dataset, what: str) -> h5py.Dataset:
        """ds, reopened so that a virtual dataset's sources resolve in the scan's
        folder; external raw storage and VDS sources that leave the folder, are
        missing or fall short of their mapping are refused."""
        if ds.external:
            raise InputError(self.path, f"{what} keeps its data in raw external files "
                             f"({', '.join(str(e[0]) for e in ds.external)}); refusing to read them")
        if not ds.is_virtual:
            return ds
        mapped = 0
        for source in ds.virtual_sources():
            f = self._file(self._inside(source.file_name, ds.file, f"{what}: virtual dataset source"))
            src = self._walk(f["/"], source.dset_name, what, 0, hard_only=True)
            if not isinstance(src, h5py.Dataset) or src.is_virtual or src.external:
                raise InputError(self.path, f"{what}: virtual dataset source {source.file_name}:{source.dset_name} "
                                 "is missing or not a plain dataset")
            points = source.vspace.get_select_npoints()
            short = src.size < points  # the rest would be read as fill values
            if not short and source.src_space.get_select_type() == h5py.h5s.SEL_HYPERSLABS:
                _, end = source.src_space.get_select_bounds()
                short = len(end) != src.ndim or any(e >= s for e, s in zip(end, src.shape))
            if short:
                raise InputError(self.path, f"{what}: virtual dataset source {source.file_name}:"
                                 f"{source.dset_name} {src.shape} is smaller than its mapping")
            mapped += points
        if mapped < ds.size:
            raise InputError(self.path, f"{what}: the virtual dataset's sources cover {mapped} of its "
                             f"{ds.size} values; refusing to read fill values as data")
        dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
        dapl.set_virtual_prefix(str(self.folder).encode())
        return h5py.Dataset(h5py.h5d.open(ds.file.id, ds.name.encode(), dapl=dapl))

    def read(self, ds: h5py.Dataset, what: str, sel=(), copies: int = 1) -> np.ndarray:
        """ds[sel], after checking that `copies` float64 arrays of that size fit in
        the memory available; unreadable data become an InputError."""
        shape = _selected_shape(ds.shape, sel)
        need = math.prod(shape) * max(ds.dtype.itemsize, 8) * copies
        avail = available_memory()
        if avail is not None and need > avail:
            raise InputError(self.path, f"{what} {tuple(ds.shape)} of {ds.dtype} needs about {human_bytes(need)} "
                             f"of memory, more than the {human_bytes(avail)} available; refusing")
        try:
            return ds[sel]
        except (OSError, ValueError) as e:
            raise InputError(self.path, f"cannot read {what} ({e}); {FILTER_HINT}") from None
        except MemoryError:
            raise InputError(self.path, f"{what} {tuple(ds.shape)} does not fit in memory") from None


def _selected_shape(shape: tuple, sel) -> tuple:
    """The shape of ds[sel] for the selections the readers use: (), a tuple of ints,
    slices and one Ellipsis."""
    sel = sel if isinstance(sel, tuple) else (sel,)
    if Ellipsis in sel:
        i = sel.index(Ellipsis)
        sel = sel[:i] + (slice(None),) * (len(shape) - len(sel) + 1) + sel[i + 1:]
    sel = sel + (slice(None),) * (len(shape) - len(sel))
    out = []
    for s, size in zip(sel, shape):
        if isinstance(s, slice):
            out.append(len(range(*s.indices(size))))
        elif not isinstance(s, (int, np.integer)):
            out.append(size)
    return tuple(out)
