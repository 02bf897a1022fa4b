"""Inference: every pattern of a scan through the network, stitched into one object.

Streaming, in two passes over the patterns, so that memory does not grow with the
number of patterns M (beyond a few numbers per position and the canvas):

1. The patterns are read a batch at a time (from a memory map of the canonical file
   when the scan was loaded with load_scan(mmap=True)) and go through the network.
   Each batch's predicted patches are kept for pass 2 (in memory up to
   `patch_memory` bytes, beyond that in an unnamed temporary file), and their
   weighted spectra enter a ring buffer just long enough to hold every neighbour
   pair: the pairwise overlaps c_jk the phase alignment needs are computed as soon
   as the second patch of a pair is known. Patterns are processed in an order that
   keeps neighbours close (file order, or bands of rows when that is closer), so the
   ring holds about two rows of the scan, not M patches.
2. The phases are solved from the c_jk (O(pairs)), then the kept patches are read
   back in the same order, rotated by their phases and stitched batch by batch.

Keeping the patches (rather than running the network twice) costs 8 N^2 bytes of
disk per pattern beyond the memory budget and saves half of the network time; the
result is the same either way: the same numbers, in the same order.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import InferConfig
from .data import Scan, input_scale
from .io import release_pages
from .model import PtychoNet
from .stitch import Stitcher, canvas_geometry, overlap_pairs, pair_overlaps, solve_phases, weighted_spectra

PATCH_MEMORY = 256 << 20  # predicted patches kept in memory up to this many bytes
STITCH_CHUNK = 256  # patches stitched at once at most (bounds the stitcher's temporaries)
PAIR_CHUNK = 512  # pair overlaps computed at once
CPU_BATCH = 256  # default patterns per forward pass on a CPU (larger is no faster: benchmarks/infer_speed.py)
CUDA_BATCH = 4096  # and on a CUDA device


@dataclass(frozen=True)
class InferSettings:
    batch_size: int  # patterns per forward pass
    autocast: torch.dtype | None  # mixed-precision dtype, or None for fp32
    channels_last: bool  # convolution weights (and so activations) in NHWC order
    fold_batchnorm: bool = True  # batch norm folded into the preceding convolution


def inference_settings(device, batch_size: int = 0, bf16_supported: bool | None = None) -> InferSettings:
    """Fast settings for the device. batch_size 0 picks the device's default; a
    positive one is kept (it bounds memory). CUDA: bf16 autocast where the device
    supports it, channels-last, large batches. CPU: fp32 (a CPU's bf16 is slower
    than fp32 without AMX), channels-last. Everywhere: batch norm folded into the
    convolutions (eval-mode batch norm is an affine map). Measured on 2 CPU cores:
    channels-last ~1.25x, with folding ~1.4x the plain network's patterns/s."""
    kind = torch.device(device).type
    if kind == "cuda":
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
        return InferSettings(batch_size or CUDA_BATCH, torch.bfloat16 if bf16_supported else None, True)
    return InferSettings(batch_size or CPU_BATCH, None, kind == "cpu")


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of an eval-mode network in which every BatchNorm2d that directly follows
    a Conv2d in an nn.Sequential is folded into that convolution's weights and bias
    (and replaced by an identity): the same function, one pass over memory less per
    layer. Modules of any other shape are left as they are."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        for seq in net.modules():
            if not isinstance(seq, nn.Sequential):
                continue
            for i in range(len(seq) - 1):
                conv, bn = seq[i], seq[i + 1]
                if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.training \
                        or not bn.track_running_stats:
                    continue
                scale = torch.rsqrt(bn.running_var + bn.eps)
                if bn.affine:
                    scale = scale * bn.weight
                shift = (conv.bias if conv.bias is not None else 0) - bn.running_mean
                shift = shift * scale + (bn.bias if bn.affine else 0)
                conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(shift.to(conv.weight.dtype))
                seq[i + 1] = nn.Identity()
    return net


def inference_network(net: nn.Module, device, settings: InferSettings) -> nn.Module:
    """The network as inference runs it: a copy (the caller's is left alone), on the
    device, batch norm folded and weights channels-last as the settings say."""
    net = fold_batchnorm(net) if settings.fold_batchnorm else copy.deepcopy(net)
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if settings.channels_last else net


def first_patterns(scan: Scan, n_images: int) -> Scan:
    """The scan cut to its first n_images patterns (0 = all)."""
    if not n_images or n_images >= len(scan.x):
        return scan
    k = n_images
    return Scan(scan.amplitude[:k], scan.probe, scan.x[:k], scan.y[:k], scan.nphotons, scan.obj)


def processing_order(pos: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The order patterns go through the network: file order, or bands of rows (each
    band one neighbour distance high, left to right), whichever keeps the members of
    every neighbour pair closer together (file order on a tie)."""
    m = len(pos)
    orders = [np.arange(m)]
    if len(pairs):
        band = max(float(np.abs(pos[pairs[:, 1], 0] - pos[pairs[:, 0], 0]).max()), 1e-9)
        rows = np.floor((pos[:, 0] - pos[:, 0].min()) / band)
        orders.append(np.lexsort((np.arange(m), pos[:, 1], rows)))
    return min(orders, key=lambda o: _pair_gap(o, pairs))


def _pair_gap(order: np.ndarray, pairs: np.ndarray) -> int:
    """How far apart (in processing steps) the members of the worst pair are."""
    if not len(pairs):
        return 0
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return int(np.abs(rank[pairs[:, 0]] - rank[pairs[:, 1]]).max())


class _Batches(Dataset):
    """Item b: the scaled patterns of the b-th batch in processing order (float32)."""

    def __init__(self, amplitude: np.ndarray, order: np.ndarray, batch: int, scale: np.float32):
        self.amplitude, self.order, self.batch, self.scale = amplitude, order, batch, scale

    def __len__(self):
        return -(-len(self.order) // self.batch)

    def __getitem__(self, b):
        idx = self.order[b * self.batch:(b + 1) * self.batch]
        out = torch.from_numpy(self.amplitude[idx] * self.scale)
        release_pages(self.amplitude[idx.min():idx.max() + 1])
        return out


class _PatchStore:
    """Predicted patches between the two passes, by processing position: in memory up
    to `budget` bytes, else in an unnamed temporary file (written and read in order;
    its pages are the kernel's page cache, not this process's memory)."""

    def __init__(self, m: int, n: int, budget: int):
        self.shape = (n, n)
        self.memory = np.empty((m, n, n), np.complex64) if m * n * n * 8 <= budget else None
        self.file = tempfile.TemporaryFile() if self.memory is None else None

    def write(self, start: int, patches: np.ndarray) -> None:
        if self.memory is not None:
            self.memory[start:start + len(patches)] = patches
        else:
            self.file.seek(start * patches[0].nbytes)
            self.file.write(np.ascontiguousarray(patches, np.complex64).data)

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.memory is not None:
            return self.memory[start:stop].copy()
        out = np.empty((stop - start, *self.shape), np.complex64)
        self.file.seek(start * out[0].nbytes)
        if self.file.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise OSError("temporary patch file is shorter than what was written")
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _predict(net: PtychoNet, x: torch.Tensor, settings: InferSettings) -> np.ndarray:
    """Complex patches (B, N, N) complex64 for a batch of scaled patterns."""
    if settings.autocast is None:
        patches = net.patches(x)
    else:
        with torch.autocast(x.device.type, dtype=settings.autocast):
            amp, phase = net(x)
        patches = torch.polar(amp.float(), phase.float())
    return patches.cpu().numpy()


def reconstruct(net: PtychoNet, scan: Scan, cfg: InferConfig, device: str = "cpu", num_workers: int = 0,
                progress=None, patch_memory: int = PATCH_MEMORY, timings: dict | None = None) -> dict:
    """Object (complex64), stitching weights and the canvas origin for a scan. The
    patterns go through the network cfg.batch_size at a time (0: the device's
    default, see inference_settings), loaded by num_workers processes; the canvas is
    the reference object's frame when the scan has one, grown to hold every whole
    window with cfg.pad_eval. The network must suit the scan's pattern size:
    bundle.load_network(n=...) refuses one that does not; it is not modified
    (inference runs a copy, see inference_network). `timings`, when given, receives
    the seconds spent per step (read, network, align, stitch). `progress`, when given,
    wraps the iterable of batches (a progress bar)."""
    clock = {"read": 0.0, "network": 0.0, "align": 0.0, "stitch": 0.0}
    t = time.perf_counter()
    # each scan is scaled by its own statistics, as the training scan was
    scale = np.float32(input_scale(scan.amplitude))
    clock["read"] += time.perf_counter() - t
    scan = first_patterns(scan, cfg.n_images)
    reference = None if scan.obj is None else scan.obj.shape
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, None if cfg.pad_eval else reference)
    if cfg.pad_eval and reference is not None:  # keep the reference frame inside the canvas
        shape = (max(shape[0], reference[0] + int(oy)), max(shape[1], reference[1] + int(ox)))
    y, x = scan.y + oy, scan.x + ox
    m, n = len(x), scan.n
    stitcher = Stitcher(shape, scan.probe, cfg.stitch, cfg.middle_trim)
    settings = inference_settings(device, cfg.batch_size)
    batch = settings.batch_size

    t = time.perf_counter()
    pos = np.stack([y, x], 1)
    align = cfg.align_phase and m > 1
    pairs = overlap_pairs(pos) if align else np.empty((0, 2), np.int64)
    order = processing_order(pos, pairs)
    rank = np.empty(m, np.int64)
    rank[order] = np.arange(m)
    # a pair's overlap is computed in the batch of its later member; the ring of
    # spectra must reach back to the earlier one
    by_later = np.argsort(np.maximum(rank[pairs[:, 0]], rank[pairs[:, 1]]), kind="stable")
    later = np.maximum(rank[pairs[:, 0]], rank[pairs[:, 1]])[by_later]
    ring_size = min(m, _pair_gap(order, pairs) + batch)
    ring = np.empty((ring_size, 2 * n, 2 * n), np.complex64) if align else None
    overlaps = np.empty(len(pairs), np.complex128)
    clock["align"] += time.perf_counter() - t

    net = inference_network(net, device, settings)
    store = _PatchStore(m, n, patch_memory)
    loader = DataLoader(_Batches(scan.amplitude, order, batch, scale), batch_size=None, num_workers=num_workers,
                        pin_memory=torch.device(device).type == "cuda")
    try:
        with torch.inference_mode():
            t = time.perf_counter()
            for b, patterns in enumerate((progress or iter)(loader)):
                start, stop = b * batch, b * batch + len(patterns)
                t1 = time.perf_counter()
                clock["read"] += t1 - t
                patches = _predict(net, patterns.to(device, non_blocking=True), settings)
                store.write(start, patches)
                t2 = time.perf_counter()
                clock["network"] += t2 - t1
                if align:
                    ring[np.arange(start, stop) % ring_size] = weighted_spectra(patches, stitcher.weight, padded=True)
                    lo, hi = np.searchsorted(later, [start, stop])
                    for s in range(lo, hi, PAIR_CHUNK):
                        sel = by_later[s:min(s + PAIR_CHUNK, hi)]
                        j, k = pairs[sel].T
                        overlaps[sel] = pair_overlaps(ring[rank[j] % ring_size], ring[rank[k] % ring_size],
                                                      pos[k] - pos[j])
                t = time.perf_counter()
                clock["align"] += t - t2
        t = time.perf_counter()
        phases = solve_phases(pairs, overlaps, m) if align else np.zeros(m)
        clock["align"] += time.perf_counter() - t
        del ring
        t = time.perf_counter()
        chunk = min(batch, STITCH_CHUNK)
        for start in range(0, m, chunk):
            stop = min(start + chunk, m)
            idx = order[start:stop]
            patches = store.read(start, stop)
            if align:
                patches *= np.exp(1j * phases[idx]).astype(np.complex64)[:, None, None]
            stitcher.add(patches, y[idx], x[idx])
        obj, weight = stitcher.result()
        clock["stitch"] += time.perf_counter() - t
    finally:
        store.close()
    if timings is not None:
        timings.update(clock)
    return {"object": obj, "weight": weight, "origin": np.array([oy, ox]), "input_scale": float(scale),
            "x": scan.x, "y": scan.y}
