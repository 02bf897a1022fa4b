"""Neighbour search over scan positions (grouping, overlap checks, phase alignment).

A uniform grid hash: positions are binned into square cells holding a few positions
each, and each position's candidates are the positions in the block of cells around
its own. A block of (2r+1) x (2r+1) cells contains every position closer than r cell
sizes, so a position whose k-th nearest candidate is closer than that is final; the
others look again in a block twice as wide. Memory and time are O(M) for scans of
roughly uniform density (any scan), and the answer is exactly the brute-force one,
ties included: neighbours are ordered by squared distance, then by index.
"""

from __future__ import annotations

import numpy as np

CELL_OCCUPANCY = 4.0  # mean positions per grid cell
CANDIDATE_CHUNK = 1 << 22  # (position, candidate) pairs examined at once: bounds memory


def nearest_neighbours(pos: np.ndarray, k: int) -> np.ndarray:
    """Indices (M, k) of each position's k nearest other positions (k is capped at
    M - 1), ordered by squared distance, then by index."""
    pos = np.asarray(pos, np.float64)
    m = len(pos)
    k = max(0, min(k, m - 1))
    out = np.empty((m, k), np.int64)
    if k == 0:
        return out
    grid = _Grid(pos)
    todo = np.arange(m)
    r = 1
    while len(todo) and grid.block_size(r) < m:
        done = np.zeros(len(todo), bool)
        step = grid.chunk(r)
        for s in range(0, len(todo), step):
            part = todo[s:s + step]
            idx, d2, full = _k_nearest(pos, grid, part, k, r)
            # final when k were found strictly inside the radius the block guarantees
            ok = full & (d2[:, -1] < (r * grid.h) ** 2)
            out[part[ok]] = idx[ok]
            done[s:s + len(part)] = ok
        todo = todo[~done]
        r *= 2
    if len(todo):  # blocks as large as the scan (isolated positions): compare with all
        out[todo] = brute_force_neighbours(pos, k, rows=todo)
    return out


def brute_force_neighbours(pos: np.ndarray, k: int, chunk: int = 2048, rows=None) -> np.ndarray:
    """The same answer as nearest_neighbours by comparing every pair (O(M^2) time; a
    reference for tests, and the last resort for isolated positions), for all
    positions or those listed in `rows`."""
    pos = np.asarray(pos, np.float64)
    m = len(pos)
    k = max(0, min(k, m - 1))
    rows = np.arange(m) if rows is None else np.asarray(rows)
    out = np.empty((len(rows), k), np.int64)
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        d = ((pos[r, None, :] - pos[None, :, :]) ** 2).sum(-1)
        d[np.arange(len(r)), r] = np.inf
        order = np.lexsort((np.broadcast_to(np.arange(m), d.shape), d), axis=1)
        out[s:s + chunk] = order[:, :k]
    return out


class _Grid:
    """Positions sorted by cell, with each cell's slice of that order."""

    def __init__(self, pos: np.ndarray):
        m = len(pos)
        lo = pos.min(0)
        ey, ex = pos.max(0) - lo
        # about CELL_OCCUPANCY positions per cell over the bounding box; the second
        # term keeps the cell count near M / CELL_OCCUPANCY for a scan along a line
        h = max(np.sqrt(ey * ex * CELL_OCCUPANCY / m), max(ey, ex) * CELL_OCCUPANCY / m)
        self.h = float(h) if h > 0 else 1.0
        cells = np.floor((pos - lo) / self.h).astype(np.int64)
        self.ny, self.nx = int(cells[:, 0].max()) + 1, int(cells[:, 1].max()) + 1
        self.cy, self.cx = cells[:, 0], cells[:, 1]
        cell_id = self.cy * self.nx + self.cx
        self.order = np.argsort(cell_id, kind="stable")
        sorted_ids = cell_id[self.order]
        self.start = np.searchsorted(sorted_ids, np.arange(self.ny * self.nx), "left")
        self.stop = np.searchsorted(sorted_ids, np.arange(self.ny * self.nx), "right")
        self.busiest = int((self.stop - self.start).max())

    def _offsets(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.arange(-min(r, self.ny - 1), min(r, self.ny - 1) + 1),
                np.arange(-min(r, self.nx - 1), min(r, self.nx - 1) + 1))

    def block_size(self, r: int) -> int:
        """Most candidates one position can have in a block of radius r."""
        oy, ox = self._offsets(r)
        return len(oy) * len(ox) * self.busiest

    def chunk(self, r: int) -> int:
        """Positions per chunk such that their candidate lists stay within the budget."""
        return max(1, CANDIDATE_CHUNK // self.block_size(r))

    def candidates(self, part: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(owner, candidate) index pairs: every position in the block of cells within
        r of each position of `part` (owner = index into `part`)."""
        oy, ox = self._offsets(r)
        cy = self.cy[part, None] + oy  # (P, 2r+1) cell rows and columns around each
        cx = self.cx[part, None] + ox
        valid = ((cy >= 0) & (cy < self.ny))[:, :, None] & ((cx >= 0) & (cx < self.nx))[:, None, :]
        cell = cy[:, :, None] * self.nx + cx[:, None, :]
        owner = np.broadcast_to(np.arange(len(part))[:, None, None], cell.shape)[valid]
        cell = cell[valid]
        counts = self.stop[cell] - self.start[cell]
        owner = np.repeat(owner, counts)
        # position j of each cell's run: start of the cell + (j - first slot of the run)
        first = np.cumsum(counts) - counts
        within = np.arange(counts.sum()) - np.repeat(first, counts)
        cand = self.order[np.repeat(self.start[cell], counts) + within]
        return owner, cand


def _k_nearest(pos, grid, part, k, r):
    """For each position of `part`: its k nearest candidates in the block of radius r
    (indices, squared distances; rows with fewer than k candidates padded) and whether
    k were found."""
    owner, cand = grid.candidates(part, r)
    keep = cand != part[owner]
    owner, cand = owner[keep], cand[keep]
    d2 = ((pos[part[owner]] - pos[cand]) ** 2).sum(-1)  # the brute force's arithmetic
    order = np.lexsort((cand, d2, owner))
    owner, cand, d2 = owner[order], cand[order], d2[order]
    counts = np.bincount(owner, minlength=len(part))
    first = np.cumsum(counts) - counts
    rank = np.arange(len(owner)) - np.repeat(first, counts)
    take = rank < k
    idx = np.zeros((len(part), k), np.int64)
    dist = np.full((len(part), k), np.inf)
    idx[owner[take], rank[take]] = cand[take]
    dist[owner[take], rank[take]] = d2[take]
    return idx, dist, counts >= k
