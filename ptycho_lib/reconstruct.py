"""Inference: every pattern of a scan through the network, stitched into one object."""

from __future__ import annotations

import numpy as np
import torch

from torch.utils.data import DataLoader

from .config import InferConfig
from .data import Scan, input_scale
from .model import PtychoNet
from .stitch import Stitcher, canvas_geometry, phase_offsets


def first_patterns(scan: Scan, n_images: int) -> Scan:
    """The scan cut to its first n_images patterns (0 = all)."""
    if not n_images or n_images >= len(scan.x):
        return scan
    k = n_images
    return Scan(scan.amplitude[:k], scan.probe, scan.x[:k], scan.y[:k], scan.nphotons, scan.obj)


def reconstruct(net: PtychoNet, scan: Scan, cfg: InferConfig, device: str = "cpu", num_workers: int = 0,
                progress=None) -> dict:
    """Object (complex64), stitching weights and the canvas origin for a scan. The
    patterns go through the network cfg.batch_size at a time, loaded by num_workers
    processes; the canvas is the reference object's frame when the scan has one,
    grown to hold every whole window with cfg.pad_eval. The network must suit the
    scan's pattern size: bundle.load_network(n=...) refuses one that does not.
    progress: optional wrapper of the batch iterable (a progress bar)."""
    # each scan is scaled by its own statistics, as the training scan was
    scale = np.float32(input_scale(scan.amplitude))
    scan = first_patterns(scan, cfg.n_images)
    reference = None if scan.obj is None else scan.obj.shape
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, None if cfg.pad_eval else reference)
    if cfg.pad_eval and reference is not None:  # keep the reference frame inside the canvas
        shape = (max(shape[0], reference[0] + int(oy)), max(shape[1], reference[1] + int(ox)))
    y, x = scan.y + oy, scan.x + ox
    stitcher = Stitcher(shape, scan.probe, cfg.stitch, cfg.middle_trim)
    net = net.to(device)
    loader = DataLoader(scan.amplitude, batch_size=cfg.batch_size, num_workers=num_workers)
    batches = (progress or iter)(loader)
    with torch.inference_mode():
        patches = np.concatenate([net.patches((batch * scale).to(device)).cpu().numpy() for batch in batches])
    if cfg.align_phase:
        patches *= np.exp(1j * phase_offsets(patches, y, x, stitcher.weight)).astype(np.complex64)[:, None, None]
    for s in range(0, len(x), cfg.batch_size):
        stitcher.add(patches[s:s + cfg.batch_size], y[s:s + cfg.batch_size], x[s:s + cfg.batch_size])
    obj, weight = stitcher.result()
    return {"object": obj, "weight": weight, "origin": np.array([oy, ox]), "input_scale": float(scale),
            "x": scan.x, "y": scan.y}
