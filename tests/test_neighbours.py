"""Grid-hash neighbour search: exactly the brute-force answer (ties included) on the
position sets scans produce and on awkward ones."""

import numpy as np
import pytest

from ptycho_lib import neighbours
from ptycho_lib.neighbours import brute_force_neighbours, nearest_neighbours

rng = np.random.default_rng(0)
CASES = {
    "uniform": rng.uniform(0, 100, (3000, 2)),
    "jittered raster": np.stack(np.mgrid[0:40, 0:50], -1).reshape(-1, 2) * 8.0 + rng.normal(0, 0.35, (2000, 2)),
    "exact grid (ties)": np.stack(np.mgrid[0:30, 0:40], -1).reshape(-1, 2) * 5.0,
    "one line": np.stack([np.zeros(500), np.arange(500.0)], 1),
    "duplicates": np.repeat(rng.uniform(0, 10, (50, 2)), 7, axis=0),
    "all identical": np.zeros((20, 2)),
    "far outlier": np.r_[rng.uniform(0, 10, (400, 2)), [[1e6, -1e6]]],
    "two clusters": np.r_[rng.normal(0, 1, (300, 2)), rng.normal(1000, 1, (300, 2))],
    "two positions": np.array([[0.0, 0.0], [1.0, 1.0]]),
    "one position": np.array([[0.0, 0.0]]),
}


@pytest.mark.parametrize("k", [1, 6, 12])
@pytest.mark.parametrize("case", sorted(CASES))
def test_grid_hash_equals_brute_force(case, k):
    pos = CASES[case]
    got = nearest_neighbours(pos, k)
    assert got.shape == (len(pos), min(k, len(pos) - 1))
    assert np.array_equal(got, brute_force_neighbours(pos, k))


def test_brute_force_orders_by_distance_then_index():
    pos = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [5.0, 5.0]])
    assert brute_force_neighbours(pos, 4)[0].tolist() == [1, 2, 3, 4]


def test_memory_stays_bounded_by_the_candidate_budget(monkeypatch):
    """A tiny budget forces one position per chunk: the answer does not change."""
    pos = CASES["jittered raster"]
    monkeypatch.setattr(neighbours, "CANDIDATE_CHUNK", 10)
    assert np.array_equal(nearest_neighbours(pos, 6), brute_force_neighbours(pos, 6))
