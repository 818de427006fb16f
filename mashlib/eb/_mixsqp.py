"""mix-SQP: maximum-likelihood mixture proportions by sequential quadratic programming.

A port of the R package mixsqp 0.3-54 (Kim, Carbonetto, Stephens & Anitescu 2020,
"A fast algorithm for maximum likelihood estimation of mixture proportions using
sequential quadratic programming", JCGS 29:261-273), see map §2.4.

Problem. Given an n x m matrix of component likelihoods :math:`L_{ik} \\ge 0` and row
weights :math:`w_i \\ge 0` (normalised to :math:`\\bar w = w / \\sum w`), find the
mixture proportions

.. math::

    \\hat x = \\arg\\min_{x \\in \\Delta_m} f(x), \\qquad
    f(x) = -\\sum_i \\bar w_i \\log\\Big(\\sum_k L_{ik} x_k + \\varepsilon\\Big).

It is solved through the equivalent problem :math:`\\min_{x \\ge 0} f(x) + \\sum_k x_k`
whose optimum satisfies :math:`\\sum_k x_k = 1`. Each SQP iteration forms the gradient
:math:`g = -L^T(\\bar w / u)` and Hessian :math:`H = L^T \\mathrm{diag}(\\bar w/u^2) L`
(:math:`u = Lx + \\varepsilon`, one BLAS ``syrk``-like product), solves the
non-negative QP :math:`\\min_{y \\ge 0} \\tfrac12 y^T H y + \\hat g^T y`,
:math:`\\hat g = g - Hx + 1`, by an active-set method (Nocedal & Wright p. 472, with a
modified Cholesky that adds :math:`a I`), and backtracks along :math:`y - x`.

Differences from R: the truncated SVD of ``L`` (irlba, ``tol.svd``) is skipped; the
full matrix is always used (R's SVD approximates L, expect ~1e-6 differences, P8).
``verbose`` defaults to False.

Implementation (same iterates as R up to floating-point reassociation, and the QP's
factor updates on free sets over 200 columns, :func:`mashlib.eb._qp._activesetqp`): one
private row-normalised copy of L, stored transposed (columns of L contiguous, and the
support's columns first, :meth:`_Problem.front`); products with the sparse iterates use
only the rows of the support; the Hessian is formed only on
the QP's free sets (:class:`_LazyHessian`); ashr's Dirichlet rows are written into the
copy instead of being stacked onto L; BLAS runs single-threaded (:class:`mashlib._blas.blas_threads`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._blas import blas_threads
from .._errors import MashConvergenceWarning, MashInputError
from .._log import get_logger, say
from ._qp import _activesetqp, _LazyHessian, _line_search, _take_rows

_log = get_logger(__name__)

__all__ = ["mixsqp", "MixSQPResult", "mixsqp_control_default", "mixobjective",
           "STATUS_CONVERGED", "STATUS_DIDNOTCONVERGE", "STATUS_DIDNOTRUN"]

STATUS_CONVERGED = "converged to optimal solution"
STATUS_DIDNOTCONVERGE = "exceeded maximum number of iterations"
STATUS_DIDNOTRUN = "SQP algorithm was not run"


def mixsqp_control_default() -> dict:
    """Default control settings of mixsqp 0.3-54 (snake_case keys).

    R's dotted names (``convtol.sqp``) are accepted by :func:`mixsqp` as aliases.
    ``maxiter_activeset=None`` becomes ``min(20, m + 1)``.
    """
    return dict(normalize_rows=True, tol_svd=1e-6, convtol_sqp=1e-8,
                convtol_activeset=1e-10, zero_threshold_solution=1e-8,
                zero_threshold_searchdir=1e-14, suffdecr_linesearch=0.01,
                stepsizereduce=0.75, minstepsize=1e-8, identity_contrib_increase=10.0,
                eps=1e-8, maxiter_sqp=1000, maxiter_activeset=None, numiter_em=10,
                verbose=False)


@dataclass
class MixSQPResult:
    """Result of :func:`mixsqp` (mirrors R's list).

    Attributes
    ----------
    x : ndarray (m,)
        Estimated mixture proportions, summing to 1 (zero for all-zero columns).
    value : float
        Objective :math:`-\\sum_i \\bar w_i (z_i + \\log \\sum_k \\tilde L_{ik} x_k)` at ``x``
        where :math:`\\tilde L` is the row-normalised L and :math:`z_i` the log row maxima.
    status : str
        ``"converged to optimal solution"``, ``"exceeded maximum number of iterations"``
        or ``"SQP algorithm was not run"``.
    converged : bool
        ``status == "converged to optimal solution"``.
    niter : int
        Number of SQP iterations run (EM warm-up not counted).
    grad, hessian : ndarray
        Gradient and Hessian of f at ``x`` (over the non-zero columns), with ``eps``.
    progress : DataFrame or None
        Per-iteration objective, max.rdual, nnz, stepsize, max.diff, nqp, nls.
    """

    x: np.ndarray
    value: float
    status: str
    converged: bool
    niter: int = 0
    grad: np.ndarray | None = None
    hessian: np.ndarray | None = field(default=None, repr=False)
    progress: pd.DataFrame | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- input
def _parse_control(control, m):
    ctrl = mixsqp_control_default()
    if control is None:
        control = {}
    if not isinstance(control, dict):
        raise MashInputError(
            f"mixsqp: argument 'control' must be a dict, got {type(control).__name__}; "
            "pass e.g. control={'eps': 1e-6}.")
    for key, val in control.items():
        k = str(key).replace(".", "_")
        if k not in ctrl:
            raise MashInputError(
                f"mixsqp: argument 'control' has unknown key {key!r}; valid keys are "
                f"{sorted(ctrl)} (R's dotted names are also accepted).")
        ctrl[k] = val
    if ctrl["maxiter_activeset"] is None:
        ctrl["maxiter_activeset"] = min(20, m + 1)
    for k in ("maxiter_activeset", "maxiter_sqp"):
        v = ctrl[k]
        if not (np.isscalar(v) and np.isfinite(v) and v > 0 and round(v) == v):
            raise MashInputError(f"mixsqp: control '{k}' = {v!r} must be an integer > 0.")
        ctrl[k] = int(v)
    for k in ("tol_svd", "convtol_sqp", "convtol_activeset", "numiter_em",
              "zero_threshold_solution", "zero_threshold_searchdir", "suffdecr_linesearch",
              "stepsizereduce", "minstepsize", "identity_contrib_increase", "eps"):
        v = ctrl[k]
        if not (np.isscalar(v) and np.isfinite(v) and v >= 0):
            raise MashInputError(
                f"mixsqp: control '{k}' = {v!r} must be a finite non-negative number.")
    if not (0 < ctrl["stepsizereduce"] < 1 and ctrl["identity_contrib_increase"] > 0
            and ctrl["suffdecr_linesearch"] > 0 and ctrl["minstepsize"] > 0):
        raise MashInputError(
            "mixsqp: control 'stepsizereduce' must be in (0, 1) and "
            "'suffdecr_linesearch', 'identity_contrib_increase', 'minstepsize' positive.")
    if ctrl["zero_threshold_solution"] >= 1.0 / m:
        raise MashInputError(
            f"mixsqp: control 'zero_threshold_solution' = {ctrl['zero_threshold_solution']} "
            f"must be < 1/m = {1.0 / m}; lower it.")
    ctrl["numiter_em"] = int(ctrl["numiter_em"])
    return ctrl


def _bad_entry(L):
    bad = ~np.isfinite(L) | (L < 0)
    i, k = np.argwhere(bad)[0]
    return MashInputError(
        f"mixsqp: argument 'L' has an invalid entry at row {i}, column {k} "
        f"(value {L[i, k]}); entries must be finite and non-negative.")


def _check_zero_rows(zero: np.ndarray, log: bool) -> None:
    """A row of L that is zero in every column (all -Inf with log=True) has no solution."""
    if zero.any():
        rows = np.flatnonzero(zero)
        what = "-Inf in every column" if log else "all zero"
        more = f" (and {rows.size - 1} more row(s))" if rows.size > 1 else ""
        raise MashInputError(
            f"mixsqp: row {int(rows[0])} of argument 'L' is {what}{more}; every row of L needs a "
            "positive entry (a likelihood above 0 under some component). Remove that row or check "
            "how L was computed.")


def _prepare(L, w, x0, log, normalize, prior=None):
    r"""Validate the inputs and build the private, row-normalised copy of L.

    The copy is stored transposed, :math:`A = \tilde L^T` (m x N, C order), so that a
    column of L is a contiguous row of A (the Hessian and the sparse products gather
    columns) and :math:`Lx`, :math:`L^Tv` are BLAS mat-vecs on A. ``prior = (cols, wts)``
    prepends the identity rows :math:`e_{cols}` with weights ``wts`` (ashr's Dirichlet
    penalty, :func:`mashlib.eb.mixopt.mix_sqp`) without stacking a second copy of L.
    L itself is read, never modified: two reductions check it, one pass writes A.

    Returns A, w (normalised, length N), x0 (normalised), z (log row maxima or zeros).
    """
    L = np.asarray(L, dtype=float)
    if L.ndim != 2 or L.shape[0] < 1 or L.shape[1] < 1:
        raise MashInputError(
            f"mixsqp: argument 'L' must be a 2-d numeric matrix with >= 1 row and column, "
            f"got shape {L.shape}.")
    if log:
        if np.isnan(L).any():
            raise MashInputError("mixsqp: argument 'L' (log=True) contains NaN; remove those rows.")
        lrow = L.max(axis=1)
        _check_zero_rows(lrow == -np.inf, log=True)
        if np.any(lrow == np.inf):
            i = int(np.argmax(lrow == np.inf))
            raise MashInputError(
                f"mixsqp: argument 'L' (log=True) has +Inf in row {i}; log-likelihoods must be "
                "finite or -Inf.")
        zmax = np.ones(L.shape[0])  # exp(L - row max) has maximum exactly 1 in every row
        lmin, lmax = 0.0, 1.0
    else:
        zmax = L.max(axis=1)  # the row maxima normalise the rows below
        _check_zero_rows(zmax == 0, log=False)
        lmin, lmax = float(L.min()), float(zmax.max())
        if not (lmin >= 0 and lmax < np.inf):  # NaN fails both comparisons
            raise _bad_entry(L)
    n, m = L.shape
    pcols, pw = (np.empty(0, dtype=int), np.empty(0)) if prior is None else prior
    r = pcols.size
    if not (lmax > 0 or r > 0):
        raise MashInputError("mixsqp: argument 'L' has no positive entry; nothing to fit.")
    w = np.ones(n) if w is None else np.asarray(w, dtype=float).ravel()
    w = np.concatenate([pw, w]) if r else w
    N = n + r
    if w.shape[0] != N or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise MashInputError(
            f"mixsqp: argument 'w' must have {N} finite non-negative entries (one per row "
            f"of L), got length {w.shape[0]}.")
    if w.sum() <= 0:
        raise MashInputError("mixsqp: argument 'w' sums to zero; give some row a positive weight.")
    w = w / w.sum()
    x0 = np.ones(m) if x0 is None else np.asarray(x0, dtype=float).ravel()
    if x0.shape[0] != m or not np.all(np.isfinite(x0)) or np.any(x0 < 0) or x0.sum() <= 0:
        raise MashInputError(
            f"mixsqp: argument 'x0' must have {m} finite non-negative entries, not all zero "
            f"(one per column of L).")
    x0 = x0 / x0.sum()

    A = np.empty((m, N))
    if r:
        A[:, :r] = 0.0
        A[pcols, np.arange(r)] = 1.0
    z = np.zeros(N)
    step = max(64, int(2 ** 20 // (8 * m)))
    if log:                         # exp(L - row max) written straight into the copy
        with np.errstate(under="ignore"):
            for i0 in range(0, n, step):
                np.exp((L[i0:i0 + step] - lrow[i0:i0 + step, None]).T,
                       out=A[:, r + i0:r + i0 + step])
    elif normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            for i0 in range(0, n, step):
                np.divide(L[i0:i0 + step].T, zmax[i0:i0 + step], out=A[:, r + i0:r + i0 + step])
            z[r:] = np.log(zmax)
    else:
        for i0 in range(0, n, step):
            A[:, r + i0:r + i0 + step] = L[i0:i0 + step].T
    with np.errstate(invalid="ignore"):
        ok = x0 @ A > 0  # positive row scaling keeps the sign; all-zero rows give NaN
    if not ok.all():
        i = int(np.argmin(ok))
        raise MashInputError(
            f"mixsqp: argument 'x0' is not a valid initial estimate: (L @ x0)[{i}] = 0; all "
            "entries of L @ x0 must be positive (give every column some weight).")
    return A, w, x0, z, bool(normalize or log)


# --------------------------------------------------------------------------- numerics
def mixobjective(L, x, w=None, z=None, e=0.0):
    """Objective :math:`-\\sum_i w_i (z_i + \\log(\\sum_k L_{ik} x_k + e))`; +inf if any u <= 0.

    ``w`` is used as given (normalise it first if needed); ``z`` defaults to 0.
    """
    L = np.asarray(L, dtype=float)
    u = L @ np.asarray(x, dtype=float) + e
    if w is None:
        w = np.full(L.shape[0], 1.0 / L.shape[0])
    if np.any(u <= 0):
        return np.inf
    zz = 0.0 if z is None else z
    return float(-np.sum(w * (zz + np.log(u))))


class _Problem:
    r"""The row-normalised problem on the private transposed copy :math:`A = \tilde L^T`.

    Products with a sparse x (after the first EM iterations x has a few dozen to a few
    hundred non-zero entries out of hundreds) touch only the rows :math:`A_S` of its support
    S: :math:`Lx = A_S^T x_S` costs n|S| instead of nm. Only :math:`L^T v` (gradient, EM
    step, the QP's optimality test) needs a full pass over the matrix.

    The rows of the private copy are kept permuted so that the current support is its first
    |S| rows (:meth:`front`): :math:`A_S` is then a view, not a gathered copy (a gather costs
    about as much as the product itself, and the support changes by a few indices per
    iteration, so keeping it in front costs a few row swaps). ``perm[p]`` is the column of L
    stored in row p; every method takes and returns vectors indexed like the columns of L.
    """

    def __init__(self, A, w, z, eps, unit_rowmax=False):
        self.A, self.w, self.z, self.eps = A, w, z, eps
        self.m = A.shape[0]
        self.perm = np.arange(self.m)     # row p of A holds column perm[p] of L
        self.where = np.arange(self.m)    # inverse of perm
        self._rows = None
        self._lx = None                   # (x, Lx) of the last product
        self.unit_rowmax = unit_rowmax  # rows normalised: every row maximum is exactly 1
        self.ws = {}  # work buffers reused across iterations (fresh pages cost as much as a pass)

    def front(self, S):
        """Move the rows of the columns S (distinct indices) to the front of A.

        Returns ``(order, AS)``: ``AS = A[:|S|]`` (a view, valid until the next call) holds
        the columns ``order`` of L (the set S, in storage order).
        """
        s = S.size
        p = self.where[S]
        outside = p[p >= s]
        if outside.size:
            held = np.zeros(s, dtype=bool)
            held[p[p < s]] = True
            free = np.flatnonzero(~held)          # front rows not in S: as many as outside
            A = self.A
            rows = A[outside]
            A[outside] = A[free]
            A[free] = rows
            a, b = self.perm[free], self.perm[outside]
            self.perm[outside], self.perm[free] = a, b
            self.where[a], self.where[b] = outside, free
        return self.perm[:s].copy(), self.A[:s]

    def rows(self, S, key="G"):
        """:math:`A_S` for any index set S (rows gathered into the buffer ``key``)."""
        return _take_rows(self.A, self.where[S], self.ws, key)

    def dense(self, S):
        """Whether a support S is used as dense (full passes) rather than moved in front."""
        return 5 * S.size > 4 * self.m

    def LTv(self, v):
        """:math:`L^T v` (one full pass)."""
        out = np.empty(self.m)
        out[self.perm] = self.A @ v
        return out

    def Lx(self, x):
        """:math:`Lx` using only the non-zero entries of x (the last result is kept: the EM
        step that follows an objective evaluation at the same x reuses it)."""
        S = np.flatnonzero(x)
        if self.dense(S):
            out = x[self.perm] @ self.A
        else:
            order, AS = self.front(S)
            out = x[order] @ AS
        self._lx = (x.copy(), out)
        return out

    def _cached_Lx(self, x):
        """:math:`Lx` if it was the last product computed, else None."""
        last = self._lx
        return last[1] if last is not None and np.array_equal(last[0], x) else None

    def objective(self, x, eps=None):
        u = self.Lx(x) + (self.eps if eps is None else eps)
        if u.min() <= 0:
            return np.inf
        return float(-np.dot(self.w, self.z + np.log(u)))

    def row_stats(self):
        """Row sums and row maxima of L (computed once)."""
        if self._rows is None:
            self._rows = (self.A.sum(axis=0), np.ones(self.A.shape[1]) if self.unit_rowmax
                          else self.A.max(axis=0))
        return self._rows

    def hessian(self, u):
        r""":math:`L^T \mathrm{diag}(\bar w/u^2) L` in full (m x m)."""
        Zs = self.A * (np.sqrt(self.w) / u)
        Hp = Zs @ Zs.T
        return Hp[np.ix_(self.where, self.where)]

    @staticmethod
    def _rowmax(B, c, out):
        r""":math:`\max_p B_{p,i} c_p` into ``out`` (N,): blocks of rows, no (|B|, N) temporary."""
        out.fill(-np.inf)
        step = 4                    # measured: 4 rows per block is the fastest on 20,000 x 785
        buf = np.empty((min(step, B.shape[0]), B.shape[1]))
        for p0 in range(0, B.shape[0], step):
            T = np.multiply(B[p0:p0 + step], c[p0:p0 + step, None], out=buf[:min(step, B.shape[0] - p0)])
            np.maximum(out, T.max(axis=0), out=out)
        return out

    def em_update(self, x, thr=None):
        r"""One EM step as mixsqp's ``mixem_update``.

        R forms :math:`T = L\,\mathrm{diag}(x + e)` (:math:`e = 10^{-15}`), divides rows
        by their max :math:`r_i`, adds e and normalises rows, then :math:`x = P^T w`.
        Algebraically, with :math:`D_i = \sum_k T_{ik} + m e r_i` and :math:`v = w/D`,

        .. math:: x^{new} = (x + e) \circ (L^T v) + e \sum_i v_i r_i .

        :math:`\sum_k T_{ik}` is a BLAS product, or :math:`(Lx)_i + e s_i` (row sums s of L)
        when the objective was just evaluated at x; :math:`r_i` a pass over blocks of rows of
        A. For sparse x (support S, in front of A): :math:`\sum_k T_{ik} = A_S^T(x_S + e) +
        e(s_i - \sum_{k\in S} L_{ik})` with the row sums s of L, and :math:`r_i = \max_{k
        \in S} L_{ik}(x_k+e)` whenever that is :math:`\ge e \max_k L_{ik}` (else the row is
        recomputed in full).

        ``thr``: the caller zeroes the entries :math:`\le` thr (mix-SQP's
        ``zero_threshold_solution``). Outside S, :math:`x^{new}_k = e((L^Tv)_k + \sum_i
        v_ir_i) \le e\sum_i v_i(\max_k L_{ik} + r_i)`; when that bound is :math:`\le` thr
        those entries are returned as 0 and the full pass :math:`L^Tv` is replaced by
        :math:`A_Sv`.
        """
        e = 1e-15
        A, w, m = self.A, self.w, self.m
        N = A.shape[1]
        xe = x + e
        S = np.flatnonzero(x)
        r = self.ws.get("r")
        if r is None:
            r = self.ws["r"] = np.empty(N)
        if not self.dense(S):
            rowsum, rowmax = self.row_stats()
            lx = self._cached_Lx(x)
            order, AS = self.front(S)
            xo = xe[order]
            if lx is None:                 # sum_k T_ik (k in S), sum_k L_ik (k in S)
                DS = np.stack([xo, np.ones(S.size)]) @ AS
            else:                          # sum_k L_ik (x_k + e) = (Lx)_i + e sum_k L_ik
                srow = np.ones(S.size) @ AS
                DS = (lx + e * srow, srow)
            self._rowmax(AS, xo, r)
            low = np.flatnonzero(r < e * rowmax)
            if 16 * low.size <= N:
                if low.size:
                    r[low] = (A[:, low] * xe[self.perm][:, None]).max(axis=0)
                D = DS[0] + e * (rowsum - DS[1]) + m * e * r
                v = w / D
                extra = e * float(v @ r)
                if thr is not None and e * float(v @ rowmax) + extra <= thr:
                    out = np.zeros(m)
                    out[order] = xo * (AS @ v) + extra
                    return out
                return xe * self.LTv(v) + extra
        xp = xe[self.perm]
        self._rowmax(A, xp, r)
        lx = self._cached_Lx(x)
        Tsum = xp @ A if lx is None else lx + e * self.row_stats()[0]
        v = w / (Tsum + m * e * r)
        return xe * self.LTv(v) + e * float(v @ r)


def mixsqp(L, w=None, x0=None, log=False, control=None) -> MixSQPResult:
    """Maximum-likelihood mixture proportions by mix-SQP (R ``mixsqp::mixsqp``).

    Parameters
    ----------
    L : array_like (n, m)
        Component likelihoods :math:`L_{ik} = p(\\text{data}_i \\mid \\text{component } k)`;
        finite and non-negative (or log-likelihoods with ``log=True``).
    w : array_like (n,), optional
        Non-negative row weights (default 1), normalised to sum to 1.
    x0 : array_like (m,), optional
        Initial estimate (default all ones), normalised; must give ``L @ x0 > 0``.
    log : bool
        If True, ``L`` holds log-likelihoods; it is replaced by ``exp(L - rowmax)``.
    control : dict, optional
        Overrides of :func:`mixsqp_control_default` (snake_case or R dotted names).

    Returns
    -------
    MixSQPResult

    Notes
    -----
    After ``numiter_em`` EM warm-up iterations
    (:math:`x_k \\leftarrow \\sum_i \\bar w_i L_{ik}x_k / \\sum_l L_{il} x_l`), each SQP
    iteration runs one EM update, zeroes :math:`x_k \\le` ``zero_threshold_solution``,
    and stops when the dual residual :math:`1 + \\min_{k: x_k > 0} g_k \\ge -`
    ``convtol_sqp``. Otherwise it solves the QP sub-problem by the active-set method
    starting from y = x and backtracks: accept step a when
    :math:`f(x_{new}) + \\sum x_{new} \\le f(x) + \\sum x + c\\,a\\,(y-x)^T(g+1)`.

    Cost per SQP iteration, once the support S of x is under 4/5 of the columns: the EM step
    (when the entries off S provably stay under the zero threshold), :math:`Lx`, the
    gradient and :math:`\\hat g = 1 - L^T(\\bar w/u + d \\circ Lx)` on S use only the rows
    of S, kept in front of the private copy; the full :math:`\\hat g` (one mat-vec with L)
    and one more mat-vec per test are needed only when the QP reaches an optimality test;
    the Hessian block :math:`H_{SS}` (n|S|^2) dominates while the support is large. BLAS
    runs single-threaded here (memory-bound mat-vecs and small factorisations: extra
    threads only spin and synchronise, and results do not depend on the thread count).
    """
    if not isinstance(log, (bool, np.bool_)):
        raise MashInputError(f"mixsqp: argument 'log' must be True or False, got {log!r}.")
    return _mixsqp(L, w, x0, log, control)


def _mixsqp(L, w, x0, log, control, prior=None, hessian=True) -> MixSQPResult:
    """:func:`mixsqp` with optional prepended identity rows ``prior = (cols, weights)``."""
    with blas_threads(1):
        return _mixsqp_body(L, w, x0, log, control, prior, hessian)


def _mixsqp_body(L, w, x0, log, control, prior, hessian):
    norm = True
    if isinstance(control, dict):
        for k, v in control.items():
            if str(k).replace(".", "_") == "normalize_rows":
                norm = bool(v)
    A, w, x0, z, unit = _prepare(L, w, x0, log, norm, prior)
    m0 = A.shape[0]
    ctrl = _parse_control(control, m0)
    verbose = bool(ctrl["verbose"])

    nonzero = np.flatnonzero(A.max(axis=1) > 0)
    if m0 == 1 or nonzero.size == 1:
        warnings.warn("mixsqp: only one column of L has positive entries; the solution is "
                      "x[k] = 1 for that column, no optimisation was needed.", UserWarning,
                      stacklevel=4)
        x = np.zeros(m0)
        x[nonzero] = 1.0
        P = _Problem(A, w, z, 0.0)
        return MixSQPResult(x=x, value=P.objective(x), status=STATUS_DIDNOTRUN,
                            converged=False, niter=0)
    if nonzero.size < m0:
        warnings.warn("mixsqp: one or more columns of L are all zeros; their mixture "
                      "weights are trivially zero.", UserWarning, stacklevel=4)
        A = A[nonzero]
        x0 = x0[nonzero]
        x0 = x0 / x0.sum()
    m = A.shape[0]
    x, stat, it, rows, grad, hess, f = _sqp_loop(A, w, x0, z, ctrl, verbose, hessian, unit)
    if stat == STATUS_DIDNOTCONVERGE:
        warnings.warn(
            "mixsqp: failed to converge within the iteration limit (maxiter_sqp="
            f"{ctrl['maxiter_sqp']}). If maxiter_sqp is small, increase it; otherwise "
            "increasing control 'eps' slightly usually fixes numerical issues.",
            MashConvergenceWarning, stacklevel=4)
    if m < m0:
        xf = np.zeros(m0)
        xf[nonzero] = x
        x = xf
    progress = pd.DataFrame(rows, columns=["objective", "max.rdual", "nnz", "stepsize",
                                           "max.diff", "nqp", "nls"])
    return MixSQPResult(x=x, value=f, status=stat, converged=(stat == STATUS_CONVERGED),
                        niter=it, grad=grad, hessian=hess, progress=progress)


def _sqp_loop(A, w, x0, z, ctrl, verbose, hessian, unit_rowmax=False):
    # L >= 0 was checked, so R's eps - min(0, min L) is eps
    P = _Problem(A, w, z, ctrl["eps"], unit_rowmax)
    thr = ctrl["zero_threshold_solution"]
    x = x0.copy()
    rows = []
    for _ in range(ctrl["numiter_em"]):
        xold = x
        x = P.em_update(x)
        obj = P.objective(x)
        rows.append((obj, np.nan, int(np.sum(x > thr)), 1.0,
                     float(np.max(np.abs(x - xold))), np.nan, np.nan))
        if verbose:
            say(_log, True, f"{len(rows):4d} {obj:+0.9e}  -- EM -- {rows[-1][2]:4d}")

    status = 1
    it = 0
    qp_state = {}  # carries the accepted modified-Cholesky multiple between sub-problems
    for it in range(1, ctrl["maxiter_sqp"] + 1):
        xold = x
        x = P.em_update(x, thr)
        x[x <= thr] = 0.0
        j1 = x > thr
        Lx = P.Lx(x)
        u = Lx + P.eps
        obj = float(-np.dot(w, z + np.log(u))) if u.min() > 0 else np.inf
        if not np.isfinite(obj):
            raise MashInputError("mixsqp: objective is -Inf (some L @ x + eps <= 0); "
                                 "check L for rows of zeros or increase control 'eps'.")
        d = w / u ** 2
        # gradient g = -L'(w/u) on the support S of x (for the dual residual; the rest of g
        # only enters through ghat = g - Hx + 1 = 1 - L'(w/u + d Lx))
        S = np.flatnonzero(x)
        dense = P.dense(S)
        if dense:
            g = -P.LTv(w / u)
        else:
            order, AS = P.front(S)
            g = np.zeros(P.m)
            g[order] = -(AS @ (w / u))
        gmin = 1.0 + float(g[j1].min())
        nnz = int(np.sum(x > 0))
        if verbose:
            say(_log, True, f"{it:4d} {obj:+0.9e} {-gmin:+0.3e}{nnz:4d}")
        if gmin >= -ctrl["convtol_sqp"]:
            status = 0
            rows.append((obj, -gmin, nnz, np.nan, np.nan, np.nan, np.nan))
            break
        if dense:
            ghat, ghat_full = g - P.LTv(d * Lx) + 1.0, None
        else:              # ghat off S is read only by the QP's optimality test: on demand
            c = w / u + d * Lx
            ghat = np.full(P.m, np.nan)
            order, AS = P.front(S)                      # S is in front already: no swaps
            ghat[order] = 1.0 - AS @ c

            def ghat_full(c=c):
                return 1.0 - P.LTv(c)
        y, nqp = _activesetqp(_LazyHessian(P, d), ghat, x, ctrl["maxiter_activeset"],
                              ctrl["zero_threshold_searchdir"], ctrl["convtol_activeset"],
                              ctrl["identity_contrib_increase"], qp_state, g_full=ghat_full)
        if not dense:      # the line search needs g on the support of y - x
            extra = np.flatnonzero((y != 0) & (x == 0))
            if extra.size:
                g[extra] = -(P.rows(extra) @ (w / u))
        a, xnew, nls = _line_search(obj, P, g, x, y, ctrl["suffdecr_linesearch"],
                                    ctrl["stepsizereduce"], ctrl["minstepsize"])
        rows.append((obj, -gmin, nnz, a, float(np.max(np.abs(xnew - xold))), nqp, nls))
        x = xnew

    x = x / x.sum()
    stat = STATUS_CONVERGED if status == 0 else STATUS_DIDNOTCONVERGE
    u = P.Lx(x) + ctrl["eps"]
    grad = -P.LTv(w / u)
    hess = P.hessian(u) if hessian else None
    return x, stat, it, rows, grad, hess, P.objective(x, eps=0.0)
