import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho_lib.simulate import ScanSpec, simulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

TINY = ScanSpec(n=32, rows=6, cols=6, step=4.0, nphotons=2e5, seed=3, object_seed=5)


@pytest.fixture(scope="session")
def tiny_raw() -> dict:
    """A small legacy-format scan: counts (32, 32, 36) uint16 under diff3d, complex128."""
    return simulate(TINY)


def save_npz(path, arrays) -> Path:
    np.savez(path, **arrays)
    return Path(path)
