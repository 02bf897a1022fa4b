"""Small linear-algebra pieces shared by the solvers of stitching and slow phase."""

from __future__ import annotations

import numpy as np


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b without BLAS: numpy's own pairwise sum, one thread (a threaded BLAS dot
    spends most of its time waiting for its threads on a busy machine: measured 40x
    slower per conjugate-gradient step at M = 100,000)."""
    return float(np.sum(a * b))


def conjugate_gradient(matvec, rhs, diag, iters=2000, tol=1e-10):
    """Jacobi-preconditioned conjugate gradient for a symmetric positive system."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = r / diag
    p = z.copy()
    rz = dot(r, z)
    stop = tol * np.sqrt(dot(rhs, rhs))
    for _ in range(iters):
        ap = matvec(p)
        alpha = rz / dot(p, ap)
        x += alpha * p
        r -= alpha * ap
        if np.sqrt(dot(r, r)) <= stop:
            break
        z = r / diag
        rz, rz_old = dot(r, z), rz
        p = z + (rz / rz_old) * p
    return x
