import os
import sys
from pathlib import Path

# Two pytest workers share the machine (pyproject's `-n 2`) and each runs torch, in-process or in the programs
# it starts, with every core. libgomp's default active wait then has each process's idle threads spin through the
# other's time slices: on 2 cores, 40 solver passes took 5 s alone and 60-120 s each with two at once (9-10 s with
# passive waiting). Set before anything imports torch; the programs the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

from ptycho_lib.simulate import ScanSpec, simulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

# Test files that take minutes (a real SLURM, fresh pipeline runs, trainings), slowest
# first: they start first, so that neither of the two workers (pyproject's addopts) is
# left running one of them alone at the end.
SLOW_FILES = ("test_slurm.py", "test_reproducible.py", "test_documented_commands.py", "test_resume.py",
              "test_bad_pixels.py", "test_formats.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: SLOW_FILES.index(item.path.name) if item.path.name in SLOW_FILES else len(SLOW_FILES))


TINY = ScanSpec(n=32, rows=6, cols=6, step=4.0, nphotons=2e5, seed=3, object_seed=5)


@pytest.fixture(scope="session")
def tiny_raw() -> dict:
    """A small legacy-format scan: counts (32, 32, 36) uint16 under diff3d, complex128."""
    return simulate(TINY)


def save_npz(path, arrays) -> Path:
    np.savez(path, **arrays)
    return Path(path)
