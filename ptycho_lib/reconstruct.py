"""Inference: every pattern of a scan through the network, stitched into one object."""

from __future__ import annotations

import numpy as np
import torch

from .config import InferConfig
from .data import Scan, input_scale
from .io import InputError
from .model import PtychoNet
from .stitch import Stitcher, canvas_geometry, phase_offsets


def reconstruct(net: PtychoNet, manifest: dict, scan: Scan, cfg: InferConfig, device: str = "cpu",
                path="") -> dict:
    """Object (complex64), stitching weights and the canvas origin for a scan."""
    if manifest["architecture"]["n"] != scan.n:
        raise InputError(path, f"patterns are {scan.n}x{scan.n} but the model was trained on "
                         f"{manifest['architecture']['n']}x{manifest['architecture']['n']}")
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, None if scan.obj is None else scan.obj.shape)
    y, x = scan.y + oy, scan.x + ox
    stitcher = Stitcher(shape, scan.probe, cfg.stitch, cfg.middle_trim)
    # each scan is scaled by its own statistics, as the training scan was
    scale = np.float32(input_scale(scan.amplitude))
    net = net.to(device)
    with torch.inference_mode():
        patches = np.concatenate([
            net.patches(torch.from_numpy(scan.amplitude[s:s + cfg.batch_size] * scale).to(device)).cpu().numpy()
            for s in range(0, len(x), cfg.batch_size)])
    if cfg.align_phase:
        patches *= np.exp(1j * phase_offsets(patches, y, x, stitcher.weight)).astype(np.complex64)[:, None, None]
    for s in range(0, len(x), cfg.batch_size):
        stitcher.add(patches[s:s + cfg.batch_size], y[s:s + cfg.batch_size], x[s:s + cfg.batch_size])
    obj, weight = stitcher.result()
    return {"object": obj, "weight": weight, "origin": np.array([oy, ox]), "input_scale": float(scale)}
