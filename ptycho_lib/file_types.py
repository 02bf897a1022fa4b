"""Which raw file types the pipeline reads and how it tells them apart, without opening
them (the workflow imports this to plan the convert stage)."""

from __future__ import annotations

from pathlib import Path

from .config import FORMATS

PTYCHODUS_PRODUCTS = ("product-in.h5", "product.h5")  # the product file beside diffraction.h5, by preference
# where a scan NAME's raw data are looked for when the config names no path, in order
RESOURCES = {"npz": "resources/{}.npz", "cxi": "resources/{}.cxi", "ptychodus": "resources/{}"}


def detect_format(source, requested: str = "auto") -> str:
    """`requested` unless auto; else ptychodus for a folder, npz for a .npz file and cxi
    for any other (HDF5) file (.cxi, .h5, .nxs)."""
    if requested != "auto":
        if requested not in FORMATS:
            raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {requested!r}")
        return requested
    source = Path(source)
    if source.is_dir():
        return "ptychodus"
    return "npz" if source.suffix.lower() == ".npz" else "cxi"


def ptychodus_product(folder) -> Path:
    """The product file of a ptychodus folder (the preferred name when none exists)."""
    folder = Path(folder)
    found = [folder / n for n in PTYCHODUS_PRODUCTS if (folder / n).is_file()]
    return (found + [folder / PTYCHODUS_PRODUCTS[0]])[0]
