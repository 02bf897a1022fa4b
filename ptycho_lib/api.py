"""Reconstruction of a scan held in memory, for programs that have the arrays already
(a GUI such as ptychodus, a notebook): arrays and a model bundle in, the object out.

    from ptycho_lib.api import reconstruct_arrays
    rec = reconstruct_arrays("results/models/fly001/wts.h5.zip", counts, probe, x, y)
    rec.object          # complex64 canvas; rec.x, rec.y: the positions on it

The arrays pass the same checks as a file (contract.canonicalise) and the network runs
exactly as in the `recon` stage (reconstruct.reconstruct), so the result equals that of
`python -m scripts.infer` on the same data written as a canonical NPZ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import load_network
from .config import InferConfig
from .contract import canonicalise
from .reconstruct import reconstruct
from .reconstruction import Reconstruction
from .scan import scan_from


def reconstruct_arrays(bundle: str | Path, diffraction: np.ndarray, probe: np.ndarray, x: np.ndarray,
                       y: np.ndarray, measurement: str = "counts", nphotons: float | None = None,
                       bad_pixels: np.ndarray | None = None, infer: InferConfig | None = None,
                       device: str = "cpu") -> Reconstruction:
    """The network's reconstruction of a scan given as arrays.

    diffraction (M, N, N), one pattern per position, zero frequency at the centre:
    `measurement` counts (default), intensity (float counts) or amplitude (sqrt of
    counts; give `nphotons`, the mean photons per pattern, when they are rescaled);
    probe (N, N) complex; x, y (M,) positions in object pixels, as the file contract's
    xcoords / ycoords; bad_pixels (N, N), nonzero where the detector measured nothing
    (left out, as the file contract's `bad_pixels`). A bundle made for another pattern
    size is refused; bad arrays raise InputError with a one-line message, as a bad
    file does."""
    raw = {"diffraction": np.asarray(diffraction), "probeGuess": np.asarray(probe),
           "xcoords": np.asarray(x), "ycoords": np.asarray(y),
           **({} if bad_pixels is None else {"bad_pixels": np.asarray(bad_pixels)})}
    scan = scan_from(canonicalise(raw, "arrays", layout="stack_first", measurement=measurement, nphotons=nphotons))
    net, _ = load_network(bundle, n=scan.n)
    return reconstruct(net, scan, infer or InferConfig(), device)
