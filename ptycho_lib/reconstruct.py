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
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .centroids import with_slow_modulus, with_slow_phase
from .config import InferConfig
from .data import input_scale
from .geometry import canvas_geometry
from .io import release_pages
from .model import PtychoNet
from .physics import scale_probe
from .reconstruction import Reconstruction
from .scan import Scan, mark_unmeasured
from .stitch import Stitcher, overlap_pairs, pair_overlaps, solve_phases, weighted_spectra

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
    convolutions (eval-mode batch norm is an affine map). Their speed-ups:
    docs/benchmarks.md."""
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
    """Item b: the scaled patterns of the b-th batch in processing order (float32), bad
    pixels marked unmeasured."""

    def __init__(self, amplitude: np.ndarray, order: np.ndarray, batch: int, scale: np.float32,
                 bad_pixels: np.ndarray | None):
        self.amplitude, self.order, self.batch, self.scale = amplitude, order, batch, scale
        self.bad_pixels = bad_pixels

    def __len__(self):
        return -(-len(self.order) // self.batch)

    def __getitem__(self, b):
        idx = self.order[b * self.batch:(b + 1) * self.batch]
        out = torch.from_numpy(mark_unmeasured(self.amplitude[idx], self.bad_pixels) * self.scale)
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


class _Clock:
    """Seconds spent per step of reconstruct()."""

    def __init__(self, *steps):
        self.seconds = dict.fromkeys(steps, 0.0)

    @contextmanager
    def __call__(self, step):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - t

    def timed(self, iterable, step):
        """The items of `iterable`, the wait for each counted as `step`."""
        items = iter(iterable)
        while True:
            with self(step):
                item = next(items, _Clock)
            if item is _Clock:
                return
            yield item


class _Overlaps:
    """The pairwise overlaps c_jk of neighbouring patches, computed while the patches
    stream by in processing order: each pair in the batch of its later member, from a
    ring of weighted spectra that reaches back to the earlier one."""

    def __init__(self, pos: np.ndarray, order: np.ndarray, pairs: np.ndarray, batch: int, n: int):
        m = len(pos)
        self.pos, self.pairs = pos, pairs
        self.rank = np.empty(m, np.int64)
        self.rank[order] = np.arange(m)
        later = np.maximum(self.rank[pairs[:, 0]], self.rank[pairs[:, 1]])
        self.by_later = np.argsort(later, kind="stable")
        self.later = later[self.by_later]
        self.size = min(m, _pair_gap(order, pairs) + batch)
        self.ring = np.empty((self.size, 2 * n, 2 * n), np.complex64)
        self.values = np.empty(len(pairs), np.complex128)

    def add(self, start: int, spectra: np.ndarray) -> None:
        """The padded weighted spectra of the patches at processing positions start, ..."""
        stop = start + len(spectra)
        self.ring[np.arange(start, stop) % self.size] = spectra
        lo, hi = np.searchsorted(self.later, [start, stop])
        for s in range(lo, hi, PAIR_CHUNK):
            sel = self.by_later[s:min(s + PAIR_CHUNK, hi)]
            j, k = self.pairs[sel].T
            self.values[sel] = pair_overlaps(self.ring[self.rank[j] % self.size], self.ring[self.rank[k] % self.size],
                                             self.pos[k] - self.pos[j])


def _canvas(scan: Scan, pad_eval: bool):
    """Canvas shape and origin: the reference object's frame when the scan has one,
    grown to hold every whole window with pad_eval (the reference frame kept inside)."""
    reference = None if scan.obj is None else scan.obj.shape
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, None if pad_eval else reference)
    if pad_eval and reference is not None:
        shape = (max(shape[0], reference[0] + int(oy)), max(shape[1], reference[1] + int(ox)))
    return shape, (oy, ox)


def reconstruct(net: PtychoNet, scan: Scan, cfg: InferConfig, device: str = "cpu", num_workers: int = 0,
                progress=None, patch_memory: int = PATCH_MEMORY, timings: dict | None = None,
                unseen: np.ndarray | None = None) -> Reconstruction:
    """The network's reconstruction of a scan: object (complex64), stitching weights,
    positions and origin on the canvas (_canvas). The patterns go through the network
    cfg.batch_size at a time (0: the device's default, see inference_settings), loaded
    by num_workers processes. The network must suit the scan's pattern size
    (bundle.load_network(n=...) refuses one that does not); it is not modified
    (inference runs a copy, see inference_network). `timings`, when given, receives
    the seconds spent per step (read, network, align, stitch; the slow modulus and
    phase from the patterns' totals and centroids, infer.slow_modulus and
    infer.centroid_phase, count as stitching). `progress`, when given,
    wraps the iterable of batches (a progress bar). `unseen`: indices of patterns the
    object is also stitched without (their patches left out of the phase solve and the
    stitch), into extra `object_unseen`, with the indices as `unseen_patterns`: what
    the refinement judges its large-scale fit by (iterative.large_scale_factor)."""
    clock = _Clock("read", "network", "align", "stitch")
    with clock("read"):  # each scan is scaled by its own statistics, as the training scan was
        scale = np.float32(input_scale(scan.amplitude))
    scan = scan.first(cfg.n_images)
    shape, (oy, ox) = _canvas(scan, cfg.pad_eval)
    y, x = scan.y + oy, scan.x + ox
    m, n = len(x), scan.n
    stitcher = Stitcher(shape, scan.probe, cfg.stitch, cfg.middle_trim)
    settings = inference_settings(device, cfg.batch_size)
    batch = settings.batch_size
    with clock("align"):
        pos = np.stack([y, x], 1)
        align = cfg.align_phase and m > 1
        pairs = overlap_pairs(pos) if align else np.empty((0, 2), np.int64)
        order = processing_order(pos, pairs)
        overlaps = _Overlaps(pos, order, pairs, batch, n) if align else None

    net = inference_network(net, device, settings)
    store = _PatchStore(m, n, patch_memory)
    loader = DataLoader(_Batches(scan.amplitude, order, batch, scale, scan.bad_pixels), batch_size=None,
                        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda")
    try:
        with torch.inference_mode():
            for b, patterns in enumerate(clock.timed((progress or iter)(loader), "read")):
                with clock("network"):
                    patches = _predict(net, patterns.to(device, non_blocking=True), settings)
                    store.write(b * batch, patches)
                if align:
                    with clock("align"):
                        overlaps.add(b * batch, weighted_spectra(patches, stitcher.weight, padded=True))
        keep = np.ones(m, bool)
        if unseen is not None:
            unseen = np.asarray(unseen)[np.asarray(unseen) < m]  # of the patterns used (cfg.n_images)
            keep[unseen] = False
        with clock("align"):
            phases = solve_phases(pairs, overlaps.values, m) if align else None
            if unseen is not None:
                phases_kept = _phases_of_subset(pairs, overlaps.values, keep) if align else None
        del overlaps
        with clock("stitch"):
            without = Stitcher(shape, scan.probe, cfg.stitch, cfg.middle_trim) if unseen is not None else None
            chunk = min(batch, STITCH_CHUNK)
            for start in range(0, m, chunk):
                stop = min(start + chunk, m)
                idx = order[start:stop]
                patches = store.read(start, stop)
                if without is not None:
                    k = idx[keep[idx]]
                    without.add(_rotated(patches[keep[idx]], phases_kept, k), y[k], x[k])
                stitcher.add(_rotated(patches, phases, idx), y[idx], x[idx])
            obj, weight = stitcher.result()
            unseen_obj = None if without is None else without.result()[0]
            probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
            if cfg.slow_modulus:  # the slow modulus from the patterns' totals, first (ptycho_lib.centroids)
                obj = with_slow_modulus(obj, probe, scan.amplitude, scan.bad_pixels, y, x, cfg.slow_modulus)
                if unseen_obj is not None:
                    unseen_obj = with_slow_modulus(unseen_obj, probe, scan.amplitude, scan.bad_pixels, y, x,
                                                   cfg.slow_modulus, np.flatnonzero(keep))
            if cfg.centroid_phase:  # the slow phase that one pattern cannot tell (ptycho_lib.centroids)
                obj = with_slow_phase(obj, probe, scan.amplitude, scan.bad_pixels, y, x, cfg.centroid_phase)
                if unseen_obj is not None:  # from the kept patterns' centroids alone
                    unseen_obj = with_slow_phase(unseen_obj, probe, scan.amplitude, scan.bad_pixels, y, x,
                                                 cfg.centroid_phase, np.flatnonzero(keep))
    finally:
        store.close()
    if timings is not None:
        timings.update(clock.seconds)
    extra = {} if unseen_obj is None else {"object_unseen": unseen_obj,
                                           "unseen_patterns": np.asarray(unseen, np.int64)}
    return Reconstruction(obj, weight, x, y, np.array([oy, ox]), dict(scan.geometry), extra=extra)


def _rotated(patches: np.ndarray, phases: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """The patches of patterns `idx` turned by their solved phases (as they are without)."""
    return patches if phases is None else patches * np.exp(1j * phases[idx]).astype(np.complex64)[:, None, None]


def _phases_of_subset(pairs: np.ndarray, values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """solve_phases over the patterns `keep` marks (only their pairs); 0 for the rest."""
    both = keep[pairs[:, 0]] & keep[pairs[:, 1]]
    index = np.cumsum(keep) - 1
    phases = np.zeros(len(keep))
    phases[keep] = solve_phases(index[pairs[both]], values[both], int(keep.sum()))
    return phases
