"""The reconstruction file every method writes and every later stage reads.

One NPZ layout for the network's reconstruction, the iterative baseline and the
refinement: the complex object on its canvas, the summed weights (which pixels the
windows lit), the positions on that canvas, the canvas `origin` (row, column of the
canonical frame's pixel 0), the scan's geometry keys when known, a JSON provenance
record, and arrays of the method's own (e.g. the solver's `fourier_error`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .geometry import lit, scanned_region
from .io import InputError, read_npz, write_npz
from .scan import GEOMETRY

REQUIRED = ("object", "weight", "xcoords", "ycoords", "origin")
DERIVED = ("amplitude", "phase", "provenance")  # written for readers without this library


def check_finite(path, obj: np.ndarray) -> None:
    """A reconstruction with NaN or Inf stops the pipeline instead of becoming zeros."""
    bad = int(np.count_nonzero(~np.isfinite(obj)))
    if bad:
        raise InputError(path, f"the reconstruction holds NaN or Inf in {bad} of {obj.size} pixels (from "
                         "non-finite weights, probe or data); refusing it")


@dataclass
class Reconstruction:
    object: np.ndarray  # (H, W) complex64, 0 where no window lit the canvas
    weight: np.ndarray  # (H, W) float32, summed window weight per canvas pixel
    x: np.ndarray  # (M,) float64, positions on this canvas (object pixels)
    y: np.ndarray
    origin: np.ndarray  # (2,) float64, canvas (row, column) of the canonical frame's pixel 0
    geometry: dict = field(default_factory=dict)  # the scan's GEOMETRY keys
    provenance: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # arrays of the method's own

    @property
    def region(self) -> tuple[slice, slice]:
        """The scanned region on this canvas (bounding box of the positions)."""
        return scanned_region(self.x, self.y)

    @property
    def pixel_size_m(self) -> float | None:
        """Object pixel width in metres, when the scan's geometry is known."""
        return float(self.geometry["pixel_size_m"][1]) if "pixel_size_m" in self.geometry else None

    def lit(self) -> np.ndarray:
        return lit(self.weight)

    def in_frame(self, shape) -> np.ndarray:
        """The object cut to the canonical frame of `shape` (the reference's)."""
        oy, ox = self.origin.astype(int)
        return self.object[oy:oy + shape[0], ox:ox + shape[1]]

    def save(self, path) -> None:
        """Write the NPZ; an object with NaN or Inf is refused (nothing written)."""
        check_finite(path, self.object)
        write_npz(path, {
            "object": self.object, "amplitude": np.abs(self.object).astype(np.float32),
            "phase": np.angle(self.object).astype(np.float32), "weight": self.weight,
            "xcoords": self.x, "ycoords": self.y, "origin": self.origin,
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True)),
            **self.geometry, **self.extra,
        })

    @classmethod
    def load(cls, path) -> Reconstruction:
        arrays = read_npz(path)
        missing = [k for k in REQUIRED if k not in arrays]
        if missing:
            raise InputError(path, f"not a reconstruction (no {', '.join(repr(k) for k in missing)})")
        obj, weight = arrays["object"], arrays["weight"]
        check_finite(path, obj)
        if obj.ndim != 2 or weight.shape != obj.shape or arrays["origin"].shape != (2,):
            raise InputError(path, f"object {obj.shape}, weight {weight.shape} and origin "
                             f"{arrays['origin'].shape} do not fit together")
        try:
            provenance = json.loads(str(arrays["provenance"])) if "provenance" in arrays else {}
        except ValueError:
            raise InputError(path, "provenance is not valid JSON") from None
        known = set(REQUIRED) | set(DERIVED) | set(GEOMETRY)
        return cls(obj, weight, arrays["xcoords"], arrays["ycoords"], arrays["origin"],
                   {k: arrays[k] for k in GEOMETRY if k in arrays}, provenance,
                   {k: v for k, v in arrays.items() if k not in known})
