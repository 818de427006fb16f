r"""mix-SQP inner pieces: the working-set Hessian, the active-set QP subproblem and the
backtracking line search (mixsqp 0.3-54, Kim et al. 2020; see :mod:`mashlib.eb._mixsqp`).

The QP at each SQP iterate x is

.. math::
    \min_{y \ge 0} \tfrac12 y^T H y + \hat g^T y, \qquad \hat g = g - Hx + 1,

solved by the working-set method of Nocedal & Wright (2006, p. 472), each equality-constrained
step with a modified Cholesky factorisation (a I added to H, a multiplied by ``ainc`` until the
factorisation succeeds). The line search backtracks on p = y - x until the sufficient-decrease
condition :math:`f(x_{new}) + \sum x_{new} \le f(x) + \sum x + c\,a\,p^T(g + 1)` holds.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf, dpotrs as _potrs

from ._qp_chol import IncrementalCholesky


def _take_rows(A, S, ws, key):
    """Rows S of A copied into the work buffer ``ws[key]`` (grown, never shrunk)."""
    buf = ws.get(key)
    if buf is None or buf.shape[0] < S.size:
        buf = ws[key] = np.empty((max(S.size, 16), A.shape[1]))
    return np.take(A, S, axis=0, out=buf[:S.size], mode="clip")  # "raise" buffers


class _LazyHessian:
    r"""Hessian :math:`H = L^T \mathrm{diag}(d) L`, :math:`d = \bar w / u^2`, formed only
    where the active-set QP needs it.

    The QP touches :math:`H_{SS}` for the current free set S (which starts as the support
    of x and then loses or gains one index per iteration) and :math:`H y` with y supported
    on S. So instead of the full m x m product (n m^2 flops, R's approach) we keep
    :math:`H_{UU}` for the union U of free sets seen in this SQP iteration: the first
    block by one product :math:`Z_U Z_U^T`, :math:`Z_U = L_{:,U}^T \mathrm{diag}(\sqrt d)`
    (n |U|^2; the columns of L are rows of the private transposed copy, and Z grows in a
    preallocated buffer), each new index k by one mat-vec :math:`Z_U z_k`; and
    :math:`H y = L^T (d \circ (L y))` costs one product over the support of y and one
    full mat-vec. Values equal those of the full product up to rounding.
    """

    def __init__(self, P, d):
        self.P, self.d = P, d
        m, n = P.A.shape
        self.ws = P.ws
        self.sd = np.sqrt(d)
        self.pos = np.full(m, -1)
        self.idx = np.empty(0, dtype=int)
        self.Z = self.ws.get("Z", np.empty((0, n)))
        self.Hc = np.empty((0, 0))

    def _add(self, new):
        k0, k1 = self.idx.size, self.idx.size + new.size
        if k1 > self.Z.shape[0]:
            Z = np.empty((max(k1, 2 * self.Z.shape[0], 16), self.Z.shape[1]))
            Z[:k0] = self.Z[:k0]
            self.Z = self.ws["Z"] = Z
        if k0 == 0:            # the first free set: the support of x, in front of A already
            new, rows = self.P.front(new)
            Zn = np.multiply(rows, self.sd, out=self.Z[:k1])
        else:
            Zn = np.take(self.P.A, self.P.where[new], axis=0, out=self.Z[k0:k1], mode="clip")
            np.multiply(Zn, self.sd, out=Zn)
        Hc = np.empty((k1, k1))
        Hc[:k0, :k0] = self.Hc
        if k0:
            cross = self.Z[:k0] @ Zn.T
            Hc[:k0, k0:] = cross
            Hc[k0:, :k0] = cross.T
        Hc[k0:, k0:] = Zn @ Zn.T
        self.Hc = Hc
        self.pos[new] = np.arange(k0, k1)
        self.idx = np.concatenate([self.idx, new])

    def block(self, idx):
        """:math:`H_{SS}` for S = idx."""
        new = idx[self.pos[idx] < 0]
        if new.size:
            self._add(new)
        p = self.pos[idx]
        if p.size == self.Hc.shape[0] and np.array_equal(p, np.arange(p.size)):
            return self.Hc  # the whole block in order (first QP iteration): no copy
        return self.Hc[np.ix_(p, p)]

    def column(self, k, idx):
        """:math:`H_{idx,k}` and :math:`H_{kk}` (k joins the cached union if new)."""
        new = np.unique(np.append(idx[self.pos[idx] < 0], k if self.pos[k] < 0 else []))
        if new.size:
            self._add(new.astype(int))
        pk = self.pos[k]
        return self.Hc[self.pos[idx], pk], float(self.Hc[pk, pk])

    def matvec_free(self, y, idx):
        r""":math:`(Hy)_{idx}` for y supported on the cached indices U, idx in U: one
        mat-vec with the cached block :math:`H_{UU}` (O(|U|^2), no pass over L)."""
        return (self.Hc @ y[self.idx])[self.pos[idx]]

    def matvec(self, y):
        r""":math:`H y = L^T (d \circ (L y))` (L y over the support of y only)."""
        S = np.flatnonzero(y)
        return self.P.LTv(self.d * (y[S] @ self.P.rows(S)))

    matvec_sparse = matvec


def _feasible_stepsize(x, p):
    """Largest step a <= 1 with x + a p >= 0; also the blocking index (or -1)."""
    neg = np.flatnonzero(p < 0)
    if neg.size == 0:
        return 1.0, -1
    t = -x[neg] / p[neg]
    j = int(np.argmin(t))
    a = float(t[j]) if t[j] < 1 else 1.0
    return a, int(neg[j])


def _activeset_searchdir(Hs, bs, ainc, hint=None, want_factor=False):
    r"""Solve :math:`(H_s + aI) p = -b_s` with the modified Cholesky of mixsqp.

    R (Nocedal & Wright Algorithm 3.3) tries :math:`a = \max(0, 10^{-15} - \min_k H_{kk})`,
    then :math:`10^{-15}` (if that was 0) multiplied by ``ainc`` until ``chol`` succeeds or
    :math:`a \cdot ainc > 10^{15}` (then B is used as is). Cholesky success is monotone in
    a, so the first successful value of that sequence can be found without trying the
    ~30 values in order (one O(|S|^3) factorisation each): test the first value, then
    the values either side of ``hint`` (the a accepted by the previous sub-problem,
    usually the answer again: two factorisations), else bisect. Same a as R.

    Returns
    -------
    p : ndarray
    a : float
        The accepted multiple (pass it back as ``hint``).
    factor : ndarray or None
        Only with ``want_factor``: the upper Cholesky factor of :math:`H_s + aI` (None when
        R's loop ended without a successful factorisation).
    """
    a0, amax = 1e-15, 1e15
    n = bs.shape[0]
    d = float(np.min(np.diag(Hs)))
    seq = [0.0 if d > a0 else a0 - d]
    while seq[-1] * ainc <= amax:
        seq.append(a0 if seq[-1] <= 0 else seq[-1] * ainc)
    last = len(seq) - 1  # R's loop stops here without a Cholesky test
    diag = np.arange(n)
    cache = {}

    def trial(i):
        if i >= last:
            return True
        if i not in cache:
            B = Hs.copy()
            B[diag, diag] += seq[i]
            # B is symmetric: its transpose is the Fortran-ordered copy LAPACK works in place on
            c, info = _potrf(B.T, lower=False, clean=False, overwrite_a=True)
            cache[i] = (info == 0, c)
        return cache[i][0]

    lo, hi = 0, last  # invariant: trial(lo) fails (once tested), trial(hi) succeeds
    h = None
    if hint is not None and hint > 0 and last > 0:
        h = int(np.searchsorted(np.asarray(seq[1:]), hint * (1 - 1e-12))) + 1
        h = min(max(h, 1), last)
    if h is not None and h >= 1 and not trial(h - 1):
        lo = h - 1
        if trial(h):
            hi = h
        else:
            lo = h
    elif h is not None and h >= 1:
        hi = h - 1
    if hi - lo >= 1 and lo == 0:
        if trial(0):
            hi = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    k = hi
    if k in cache and cache[k][0]:
        p = _potrs(cache[k][1], -bs, lower=False)[0]
        return (p, seq[k], cache[k][1]) if want_factor else (p, seq[k])
    B = Hs.copy()
    B[diag, diag] += seq[k]
    try:
        p = np.linalg.solve(B, -bs)
    except np.linalg.LinAlgError:
        p = np.linalg.lstsq(B, -bs, rcond=None)[0]
    return (p, seq[k], None) if want_factor else (p, seq[k])


_LARGE = 200   # free sets larger than this: the factor is updated, not recomputed
               # (a factorisation, |S|^3/3 flops, then costs more than a Givens update)


def _activesetqp(H, g, y, maxiter, zerosearchdir, tol, ainc, state=None, incremental=True,
                 g_full=None):
    """Active-set method (Nocedal & Wright 2006, p. 472) for min 1/2 y'Hy + g'y, y >= 0.

    Each iteration factors :math:`H_{SS} + aI` with R's modified-Cholesky search, except on
    free sets larger than 200 columns, where a factorisation costs O(|S|^3): there later
    iterations update the first factor as S loses or gains an index
    (:class:`mashlib.eb._qp_chol.IncrementalCholesky`, O(|S|^2)) and keep its a.  R
    re-searches a at every iteration; on such free sets :math:`H_{SS}` is singular to
    rounding (mash's likelihood columns are nearly collinear, and above the number of rows of
    L it is singular), so R's a (1e-15 to 1e-13) is set by rounding alone.  The QP's
    solution and mix-SQP's optimum are unchanged: on the 20,000 x 44 canonical fit the weights
    move by 6e-7 and the objective by 2e-12 (relative); the parity suite keeps its
    tolerances.  A failed update, a free set back under that size, or ``incremental=False``
    refactors.  Otherwise the iterates are R's.

    ``g_full``: when given, ``g`` holds only the entries on the support of ``y`` (the first
    free set) and ``g_full()`` returns all of it; it is called at the first optimality test,
    the only place that reads g off the free set (a QP that ends at its iteration cap before
    any test never needs it).

    Returns (y, number of iterations). ``t[k] == False`` means k is in the working set.
    """
    state = {} if state is None else state
    y = y.copy()
    t = y > 0
    it = 0
    fac = None
    large = _LARGE
    while it < maxiter:
        inn = np.flatnonzero(t)
        ws = np.flatnonzero(~t)
        y[ws] = 0.0
        p = np.zeros_like(y)
        if fac is not None and inn.size <= large:     # small again: refactor as R does
            fac = None
        if inn.size and fac is None:
            Hs = H.block(inn)
            b_in = g[inn] + Hs @ y[inn]
            p[inn], aacc, U = _activeset_searchdir(Hs, b_in, ainc, state.get("a"),
                                                   want_factor=True)
            state["a"] = aacc
            if incremental and U is not None and inn.size > large:
                fac = IncrementalCholesky(U, inn, aacc)
        elif inn.size:
            order = fac.free
            Hy = H.matvec_free(y, order) if hasattr(H, "matvec_free") else \
                H.matvec_sparse(y)[order]
            p[order] = -fac.solve(g[order] + Hy)
        if np.max(np.abs(p)) <= zerosearchdir:
            if g_full is not None:
                g, g_full = g_full(), None
            b = g + H.matvec_sparse(y)
            if ws.size == 0 or b[ws].min() >= -tol:
                it += 1
                break
            k = int(ws[int(np.argmin(b[ws]))])
            t[k] = True
            if fac is not None:
                if hasattr(H, "column"):
                    hcol, hkk = H.column(k, fac.free)
                else:
                    B = H.block(np.append(fac.free, k))
                    hcol, hkk = B[:-1, -1], float(B[-1, -1])
                if not fac.append(k, hcol, hkk):
                    fac = None
        else:
            a, k = _feasible_stepsize(y, p)
            add = k >= 0 and a < 1 and inn.size > 1
            y += a * p
            y[y < 0] = 0.0
            if add:
                t[k] = False
                y[k] = 0.0
                if fac is not None:
                    fac.remove(k)
        it += 1
    return y, it


def _line_search(f, P, g, x, y, suffdecr, beta, amin):
    """Backtracking line search along p = y - x (Nocedal & Wright p. 37)."""
    p = y - x
    afeas, _ = _feasible_stepsize(x, p)
    nls = 0
    if afeas <= amin:
        return afeas, afeas * y + (1 - afeas) * x, nls
    a = min(1.0, afeas)
    target0 = f + x.sum()
    slope = float(np.dot(p, g + 1))
    while True:
        xnew = a * y + (1 - a) * x
        # R stops with "Objective is -Inf" when L xnew + e <= 0; we reject the step instead
        fnew = P.objective(xnew)
        nls += 1
        if xnew.min() >= 0 and fnew + xnew.sum() <= target0 + suffdecr * a * slope:
            break
        if a * beta < amin:
            a = amin
            xnew = a * y + (1 - a) * x
            if xnew.min() < 0:
                a, xnew = 0.0, x.copy()
            break
        a *= beta
    return a, xnew, nls


# --------------------------------------------------------------------------- main
