"""Neighbour search over scan positions (grouping, overlap checks, phase alignment)."""

from __future__ import annotations

import numpy as np


def nearest_neighbours(pos: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Indices (M, k) of each position's k nearest other positions (brute force, chunked)."""
    m = len(pos)
    k = min(k, m - 1)
    out = np.empty((m, k), np.int64)
    for s in range(0, m, chunk):
        d = ((pos[s:s + chunk, None, :] - pos[None, :, :]) ** 2).sum(-1)
        d[np.arange(d.shape[0]), np.arange(s, s + d.shape[0])] = np.inf
        idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < m - 1 else np.argsort(d, 1)[:, :k]
        # order by distance, then index, so results do not depend on argpartition internals
        dd = np.take_along_axis(d, idx, 1)
        out[s:s + chunk] = np.take_along_axis(idx, np.lexsort((idx, dd), axis=1), 1)
    return out
