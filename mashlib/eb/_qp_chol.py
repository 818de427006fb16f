r"""Cholesky factor of the active-set QP's free block, updated as the free set changes.

The working-set QP of :mod:`mashlib.eb._qp` solves, at each of its iterations,
:math:`(H_{SS} + aI)p = -b_S` for the current free set S, which loses or gains one index per
iteration.  R refactors :math:`H_{SS} + aI` from scratch each time (|S|^3/3 flops; |S| is
over 1,000 on the protocol's data).  Here the upper factor :math:`U^TU = H_{SS} + aI` is kept
and

* **removing** the index at position p: the rows/columns before p are unchanged and the
  trailing block satisfies :math:`U_{33}'^TU_{33}' = U_{33}^TU_{33} + u u^T` with
  :math:`u = U_{p, p+1:}`, a rank-one *update* done by Givens rotations (BLAS ``drot``,
  O(|S|^2), numerically stable); a principal sub-matrix of a positive definite matrix is
  positive definite, so the same :math:`a` stays valid;
* **adding** index k at the end (bordering): :math:`U^Tc = (H + aI)_{S,k}`,
  :math:`\delta = H_{kk} + a - c^Tc`; if :math:`\delta > 0` the factor grows by one column
  (O(|S|^2)), else the caller refactors with the modified-Cholesky search.

So a QP sub-problem costs one factorisation plus O(|S|^2) per iteration.  :math:`a` is the
value chosen at the last factorisation (R would re-search it at every iteration and may pick a
smaller one after a removal); the QP's solution and mix-SQP's optimum are unchanged (tested
against the refactor-every-time path).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg.blas import drot as _drot
from scipy.linalg.lapack import dpotrs as _potrs, dtrtrs as _trtrs

__all__ = ["IncrementalCholesky"]


class IncrementalCholesky:
    """Upper factor U (C order) with :math:`U^TU = H_{SS} + aI` for the ordered free set.

    A removed index keeps its row and column as a unit row/column (decoupled from the rest,
    its solution component is 0), so a removal costs the rank-one update only, no O(|S|^2)
    copy; ``alive`` marks the live positions of ``order``.

    Parameters
    ----------
    U : ndarray (n, n)
        Upper-triangular factor (only the upper triangle is read).
    order : ndarray of int (n,)
        The free indices, in the factor's row order.
    a : float
        The multiple of the identity included in the factor.
    """

    def __init__(self, U: np.ndarray, order: np.ndarray, a: float):
        self.U = np.ascontiguousarray(np.triu(U))
        self.order = np.asarray(order, dtype=np.intp).copy()
        self.alive = np.ones(self.order.size, dtype=bool)
        self.a = float(a)

    @property
    def free(self) -> np.ndarray:
        """The live free indices, in factor order."""
        return self.order[self.alive]

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """:math:`(U^TU)^{-1}` rhs for rhs given on :attr:`free`; result on :attr:`free`."""
        full = np.zeros(self.order.size)
        full[self.alive] = rhs
        # U (C order) viewed as Fortran is L = U^T: potrs with lower=True solves L L^T x = rhs
        x, info = _potrs(self.U.T, full, lower=True)
        if info != 0:                                   # pragma: no cover (bad argument)
            raise np.linalg.LinAlgError(f"potrs info {info}")
        return x[self.alive]

    def remove(self, k: int) -> None:
        """Drop free index k: rank-one update of the trailing block, unit row/column at k."""
        p = int(np.flatnonzero(self.order == k)[0])
        U = self.U
        n = U.shape[0]
        u = U[p, p + 1:].copy()
        T = U[p + 1:, p + 1:]                           # trailing block, updated in place
        m = n - p - 1
        for j in np.flatnonzero(u):                     # dead positions have u == 0
            tjj, xj = T[j, j], u[j]
            r = math.hypot(tjj, xj)
            c, s = tjj / r, xj / r
            T[j, j] = r
            if j + 1 < m:
                _drot(T[j, j + 1:], u[j + 1:], c, s, overwrite_x=True, overwrite_y=True)
        U[p, p + 1:] = 0.0
        U[:p, p] = 0.0
        U[p, p] = 1.0
        self.alive[p] = False

    def append(self, k: int, hcol: np.ndarray, hkk: float) -> bool:
        """Add free index k with :math:`H_{S,k}` (on :attr:`free`) and :math:`H_{kk}`.

        Returns False (factor unchanged) when the new pivot is not positive.
        """
        n = self.U.shape[0]
        if n:
            h = np.zeros(n)
            h[self.alive] = hcol
            c, info = _trtrs(self.U.T, h, lower=True)         # U^T c = h
            if info != 0:                               # pragma: no cover
                return False
            d = hkk + self.a - float(c @ c)
        else:
            c, d = np.empty(0), hkk + self.a
        if not (d > 0 and np.isfinite(d)):
            return False
        out = np.zeros((n + 1, n + 1))
        out[:n, :n] = self.U
        out[:n, n] = c
        out[n, n] = math.sqrt(d)
        self.U = out
        self.order = np.append(self.order, k)
        self.alive = np.append(self.alive, True)
        return True
