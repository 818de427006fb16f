"""Likelihood matrices for mash (mashr ``R/likelihoods_scaleddata.R``, ``src/mash.h::calc_lik``).

For effect j and mixture component p (map §2.2 "Likelihoods"):

.. math::  \\ell_{jp} = \\log N_R(\\hat b_j;\\, 0,\\, \\Sigma_j + U_p), \\qquad
           \\Sigma_j = S_j V_j S_j

on the transformed scale (``data.Bhat``, ``data.Shat``).

Algorithm (batched, no loop over rows).  The P components are factored as
``U_p = c_p B_{k(p)}`` (mash's ``expand_cov`` gives K bases times L grid scales; the
factoring is detected numerically so any stack works).  For a row chunk, whiten with
``Sigma_j = L_j L_j^T`` (``L_j = S_j chol(V)`` for a common V, so no per-row factorisation):
``b~ = L_j^{-1} b``.  For a PSD base with factor ``B = F F^T`` (rank r, from its
eigendecomposition; exactly low-rank bases such as singletons, ``equal_effects``, PCA and
flash factors keep r small) put ``F~ = L_j^{-1} F``, ``G = F~^T F~ = E diag(gamma) E^T``,
``u = E^T F~^T b~``.  Then for every grid scale c (matrix determinant lemma / Woodbury)

.. math::  \\log|\\Sigma_j + cB| = \\log|\\Sigma_j| + \\sum_i \\log(1 + c\\gamma_i), \\quad
           b^T(\\Sigma_j + cB)^{-1}b = \\|\\tilde b\\|^2 - \\sum_i \\frac{c\\,u_i^2}{1 + c\\gamma_i}.

One small eigendecomposition per (row, base) serves all L grid values; when all rows share
``Sigma`` (common covariance) it is one per base and the rest are matrix products over all
rows.  Bases that are diagonal plus rank one (mashr's ``identity`` and ``simple_het``) need
none when the errors are diagonal (V = I): closed forms of :mod:`mashlib.model._dr1`.
Bases with tiny negative eigenvalues (allowed by mashr's ``issemidef`` > -1e-8) use
``U~ = L^{-1} B L^{-T} = Q diag(lambda) Q^T`` with weights ``omega = lambda``.  A
non-positive ``1 + c gamma_i`` is mashr's Cholesky failure: -Inf, or +Inf when
``||b||_1 < 1e-6`` (P5); such columns are reported by a warning naming component and grid.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from .._blas import single_blas_thread
from .._errors import MashInputError
from .data import MashData
from ._dr1 import dr1_loglik, dr1_loglik_correlated, dr1_rotation, dr1_structure

__all__ = ["calc_lik_matrix", "calc_relative_lik_matrix", "ComponentBasis", "whiten_rows",
           "group_spectra", "component_loglik", "DEFAULT_MEMORY_BYTES"]

LOG_2PI = float(np.log(2 * np.pi))
DEFAULT_MEMORY_BYTES = 256 * 2 ** 20
_RANK_TOL = 1e-13
_USE_DR1 = True          # closed forms for diagonal + rank-one bases under diagonal errors
_CONST_TOL = 1e-12       # a dr1 base's diagonal part is delta * I to this relative accuracy


@dataclass
class _Group:
    mode: str               # "gram" (PSD, U = F F^T), "dr1" (gram, and diag + rank one) or "full"
    r: int                  # rank used
    bases: np.ndarray       # (Kg,) base indices
    F: np.ndarray           # (Kg, R, r) factors (gram, dr1) or (Kg, R, R) base matrices (full)
    zero_rows: np.ndarray   # (Kg, R) bool: rows of the base that are exactly zero
    delta: Optional[np.ndarray] = None   # dr1: (Kg, R), B = diag(delta) + zeta zeta^T
    zeta: Optional[np.ndarray] = None    # dr1: (Kg, R)
    const_delta: bool = False            # dr1 with delta = delta_k * 1 for every base of the group


@dataclass
class ComponentBasis:
    """Factorisation ``U_p = scale[p] * bases[base_of[p]]`` of a (P, R, R) stack.

    ``base_of[p] == -1`` marks an all-zero (point mass) component.  Bases are grouped by
    numerical rank for batching.
    """

    base_of: np.ndarray
    scale: np.ndarray
    bases: np.ndarray
    groups: list = field(default_factory=list)
    group_of_base: np.ndarray = None   # (K,) group index
    pos_in_group: np.ndarray = None    # (K,) position within its group

    @property
    def n_components(self) -> int:
        return int(self.base_of.size)

    @classmethod
    def from_stack(cls, U: np.ndarray) -> "ComponentBasis":
        U = np.asarray(U, float)
        P, R, _ = U.shape
        base_of = np.full(P, -1, dtype=np.intp)
        scale = np.zeros(P)
        bases, lookup = [], {}
        for p in range(P):  # loop over components (few hundred), never over rows
            Up = U[p]
            if not Up.any():
                continue
            d = np.abs(np.diag(Up)).max()
            if d == 0:
                d = np.abs(Up).max()
            Nm = Up / d
            key = (np.round(Nm, 9) + 0.0).tobytes()
            k = lookup.get(key)
            if k is None or not np.allclose(bases[k], Nm, rtol=1e-12, atol=1e-15):
                k = len(bases)
                bases.append(Nm)
                lookup.setdefault(key, k)
            base_of[p] = k
            scale[p] = d
        K = len(bases)
        bases = np.array(bases).reshape(K, R, R)
        specs = []
        for k in range(K):
            B = (bases[k] + bases[k].T) / 2
            zr = ~B.any(axis=1)
            lam, Q = np.linalg.eigh(B)
            lmax = np.abs(lam).max()
            if lam.min() >= -_RANK_TOL * lmax:
                keep = lam > _RANK_TOL * lmax
                F = Q[:, keep] * np.sqrt(lam[keep])
                F[zr] = 0.0
                dz = dr1_structure(B) if keep.sum() > 1 else None
                dc = _constant_diagonal(dz) if dz is not None else None
                specs.append(("gram" if dz is None else "dr1", int(keep.sum()), F, zr,
                              dz if dc is None else dc, dc is not None))
            else:
                specs.append(("full", R, B, zr, None, False))
        groups, gob, pig = [], np.zeros(K, np.intp), np.zeros(K, np.intp)
        keys = sorted({(m, r, cd) for m, r, _, _, _, cd in specs})
        for gi, (m, r, cd) in enumerate(keys):
            ks = np.array([k for k in range(K) if specs[k][0] == m and specs[k][1] == r
                           and specs[k][5] == cd], np.intp)
            F = np.stack([specs[k][2] for k in ks]) if ks.size else np.zeros((0, R, r))
            zr = np.stack([specs[k][3] for k in ks])
            grp = _Group(m, r, ks, F, zr)
            if m == "dr1":
                grp.delta = np.stack([specs[k][4][0] for k in ks])
                grp.zeta = np.stack([specs[k][4][1] for k in ks])
                grp.const_delta = cd
            groups.append(grp)
            gob[ks] = gi
            pig[ks] = np.arange(ks.size)
        return cls(base_of, scale, bases, groups, gob, pig)

    def components_by_group(self, comps: Optional[np.ndarray] = None):
        """Yield ``(group, comp_idx, pos_in_group)`` for the given (default all) components."""
        comps = np.arange(self.n_components) if comps is None else np.asarray(comps)
        b = self.base_of[comps]
        for gi, g in enumerate(self.groups):
            sel = np.flatnonzero((b >= 0) & (self.group_of_base[np.maximum(b, 0)] == gi))
            if sel.size:
                yield g, sel, self.pos_in_group[b[sel]]


def _constant_diagonal(dz):
    """``(delta, zeta)`` of a dr1 base rewritten with a constant diagonal part,
    :math:`B = \\delta_0 I + \\zeta\\zeta^T`, or None.  A diagonal base with one entry above the
    others (the ``ED_`` refinement of a singleton, :math:`m e_ke_k^T + \\epsilon I`) is
    :math:`\\delta_0 I + (\\delta_k - \\delta_0)e_ke_k^T`."""
    delta, zeta = dz
    top = np.abs(delta).max()
    if np.ptp(delta) <= _CONST_TOL * top:
        return delta, zeta
    if zeta.any():
        return None
    lo = delta.min()
    up = delta - lo > _CONST_TOL * top
    if up.sum() != 1:
        return None
    z = np.zeros_like(delta)
    z[up] = np.sqrt(delta[up] - lo)
    return np.full_like(delta, lo), z


def whiten_rows(Bhat, Shat, V, common: bool):
    """Whiten a row chunk: ``Sigma_j = S_j V_j S_j = L_j L_j^T``.

    Parameters
    ----------
    Bhat, Shat : (c, R) arrays (transformed scale)
    V : (R, R) common or (c, R, R) per-row correlation
    common : bool
        All rows share Sigma (then ``L``/``Linv`` have a leading axis of length 1).

    Returns
    -------
    dict with ``Bt`` (c, R) whitened b, ``logdet`` ((c,) or (1,)) log|Sigma_j|, ``L`` and
    ``Linv`` ((c|1), R, R), ``b_l1`` (c,) the L1 norm of b.
    """
    c, R = Bhat.shape
    if V.ndim == 2:
        LV = np.linalg.cholesky(V)
        LVinv = np.linalg.inv(LV)
        ldV = 2 * np.log(np.diag(LV)).sum()
        S = Shat[:1] if common else Shat
        L = S[:, :, None] * LV[None]
        Linv = LVinv[None] / S[:, None, :]
        logdet = ldV + 2 * np.log(S).sum(axis=1)
        Bt = (Bhat / Shat) @ LVinv.T
        ident = bool(np.array_equal(V, np.eye(R)))
        return {"Bt": Bt, "logdet": logdet, "L": L, "Linv": Linv, "Sinv": 1.0 / S,
                "LVinv": None if ident else LVinv,
                "b_l1": np.abs(Bhat).sum(axis=1), "bb": np.einsum("ja,ja->j", Bt, Bt)}
    else:
        Sig = Shat[:, :, None] * V * Shat[:, None, :]
        L = np.linalg.cholesky(Sig)
        Linv = np.linalg.inv(L)
        logdet = 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        Bt = np.einsum("jab,jb->ja", Linv, Bhat)
    return {"Bt": Bt, "logdet": logdet, "L": L, "Linv": Linv,
            "b_l1": np.abs(Bhat).sum(axis=1), "bb": np.einsum("ja,ja->j", Bt, Bt)}


def diagonal_errors(W) -> bool:
    """The chunk's errors are diagonal (common V equal to the identity): the closed forms of
    :mod:`mashlib.model._dr1` apply to diagonal-plus-rank-one ("dr1") bases."""
    return _USE_DR1 and "Sinv" in W and W.get("LVinv", 0) is None


def _project(Bt, M):
    """``u[j, k, :] = M[j or 0, k]^T b~_j`` for M of shape ((c|1), K, R, r)."""
    if M.shape[0] == 1:
        return np.tensordot(Bt, M[0], axes=([1], [1]))                 # one GEMM
    if M.shape[-1] == 1:
        return (M[..., 0] * Bt[:, None, :]).sum(axis=2)[..., None]
    return np.matmul(Bt[:, None, None, :], M)[:, :, 0, :]


def group_spectra(g: _Group, W: dict):
    """Per (row, base) spectra of one rank group.

    Returns ``gam`` ((c|1), Kg, r), ``omega`` (same shape, or 1.0), ``u`` (c, Kg, r) and
    ``N`` ((c|1), Kg, R, r) such that, for scale c, ``mu1 = N (e * u)`` and
    ``U1 = N diag(e) N^T`` with ``e = c omega / (1 + c gam)`` (transformed scale).
    """
    Linv, Bt = W["Linv"], W["Bt"]
    if g.mode in ("gram", "dr1"):
        if "Sinv" in W:     # common V: L_j^{-1} F = chol(V)^{-1} diag(1/s_j) F (one GEMM)
            Ft = g.F[None] * W["Sinv"][:, None, :, None]               # (c|1, Kg, R, r)
            if W["LVinv"] is not None:
                Ft = np.moveaxis(np.tensordot(W["LVinv"], Ft, axes=([1], [2])), 0, 2)
        else:
            Ft = np.matmul(Linv[:, None], g.F[None])
        if g.r == 1:
            gam = (Ft * Ft).sum(axis=2)
            u = _project(Bt, Ft)
            N = np.broadcast_to(g.F[None], (1,) + g.F.shape)
            return gam, 1.0, u, N
        G = np.matmul(np.swapaxes(Ft, -1, -2), Ft)
        gam, E = np.linalg.eigh(G)
        u = _project(Bt, np.matmul(Ft, E))                              # (c, Kg, r)
        N = np.matmul(g.F[None], E)
        N = np.where(g.zero_rows[None, :, :, None], 0.0, N)
        return gam, 1.0, u, N
    # full (indefinite) bases: U~ = Linv B Linv^T
    Ut = np.matmul(np.matmul(Linv[:, None], g.F[None]), np.swapaxes(Linv, -1, -2)[:, None])
    lam, Q = np.linalg.eigh((Ut + np.swapaxes(Ut, -1, -2)) / 2)
    u = _project(Bt, Q)
    N = np.matmul(W["L"][:, None], Q)
    N = np.where(g.zero_rows[None, :, :, None], 0.0, N)
    return lam, lam, u, N


def component_loglik(W, scale, gam, omega, u):
    """log N(b; 0, Sigma + c B) for components of one group.

    ``scale`` (Pg,), ``gam``/``omega`` ((c|1), Pg, r), ``u`` (c, Pg, r).  Returns (c, Pg)
    and a boolean (c, Pg) mask of Cholesky failures (``1 + c gam <= 0``).
    """
    R = W["Bt"].shape[1]
    cs = scale[None, :, None]
    t = 1.0 + cs * gam
    bad = (t <= 0).any(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ld = np.log(np.where(t > 0, t, 1.0)).sum(axis=2)
        red = (cs * omega * u * u / np.where(t > 0, t, 1.0)).sum(axis=2)
    quad = W["bb"][:, None] - red
    ll = -0.5 * R * LOG_2PI - 0.5 * W["logdet"][:, None] - 0.5 * ld - 0.5 * quad
    if bad.any():
        bad = np.broadcast_to(bad, ll.shape)
        fill = np.where(W["b_l1"] < 1e-6, np.inf, -np.inf)[:, None]
        ll = np.where(bad, fill, ll)
    return ll, bad


def _chunk_rows(J: int, per_row_bytes: float, memory_bytes: int) -> int:
    return int(max(1, min(J, memory_bytes // max(per_row_bytes, 1.0))))


def _stack_U(Ulist) -> tuple[list, np.ndarray]:
    if isinstance(Ulist, Mapping):
        names = list(Ulist.keys())
        U = np.stack([np.asarray(Ulist[k], float) for k in names]) if names else np.zeros((0, 0, 0))
    else:
        U = np.asarray(Ulist, float)
        if U.ndim == 2:
            U = U[None]
        names = [str(i + 1) for i in range(U.shape[0])]
    return names, U


def loglik_rows(Bhat, Shat, V, basis: ComponentBasis, common: bool,
                comps: Optional[np.ndarray] = None):
    """Log-likelihood (c, P') of one row chunk for components ``comps`` (default all)."""
    comps = np.arange(basis.n_components) if comps is None else np.asarray(comps)
    W = whiten_rows(Bhat, Shat, V, common)
    c, R = Bhat.shape
    out = np.empty((c, comps.size))
    nullc = basis.base_of[comps] < 0
    if nullc.any():
        out[:, nullc] = (-0.5 * R * LOG_2PI - 0.5 * W["logdet"] - 0.5 * W["bb"])[:, None]
    bad_any = np.zeros(comps.size, bool)
    closed = diagonal_errors(W)
    corr = _USE_DR1 and "Sinv" in W and W.get("LVinv") is not None     # common V != I
    rot = None
    for g, sel, pos in basis.components_by_group(comps):
        if closed and g.mode == "dr1":          # no eigendecomposition: closed form
            out[:, sel] = dr1_loglik(W, basis.scale[comps[sel]], pos, g.delta, g.zeta)
            continue
        if corr and g.mode == "dr1" and g.const_delta:   # one eigendecomposition per row
            rot = dr1_rotation(W) if rot is None else rot
            out[:, sel] = dr1_loglik_correlated(W, rot, basis.scale[comps[sel]], pos,
                                                g.delta[:, 0], g.zeta)
            continue
        gam, omega, u, _ = group_spectra(g, W)
        om = omega if np.isscalar(omega) else omega[:, pos]
        ll, bad = component_loglik(W, basis.scale[comps[sel]], gam[:, pos], om, u[:, pos])
        out[:, sel] = ll
        bad_any[sel] |= bad.any(axis=0)
    return out, bad_any


def _per_row_bytes(basis: ComponentBasis, R: int, P: int) -> float:
    tot = 6.0 * P
    for g in basis.groups:
        tot += g.bases.size * (3 * R * g.r + 4 * g.r * g.r + 4 * g.r)
    return 8.0 * tot + 8.0 * 3 * R * R


@single_blas_thread
def calc_lik_matrix(data: MashData, Ulist, log: bool = False,
                    memory_bytes: int = DEFAULT_MEMORY_BYTES, grid=None) -> np.ndarray:
    """J x P matrix of (log-)likelihoods ``N(b_j; 0, S_j V S_j + U_p)`` (mashr ``calc_lik_matrix``).

    Parameters
    ----------
    data : MashData
    Ulist : dict name -> R x R or (P, R, R) array
        Usually the expanded list from :func:`mashlib.expand_cov`.
    log : bool
        Return log-densities.
    memory_bytes : int
        Working-memory budget; rows are processed in chunks that fit it.
    grid : array_like, optional
        The grid behind ``<U>.<l>`` names, used only to describe non-finite columns.

    Returns
    -------
    ndarray, shape (J, P)

    Warns
    -----
    UserWarning
        When a column contains non-finite values (mashr only warns; we name the component).
    """
    names, U = _stack_U(Ulist)
    J, R = data.Bhat.shape
    if U.shape[0] == 0:
        raise MashInputError("Ulist: is empty; supply at least one covariance matrix.")
    if U.shape[1:] != (R, R):
        raise MashInputError(f"Ulist: matrices are {U.shape[1]} x {U.shape[2]} but the data have "
                             f"R = {R} conditions.")
    basis = ComponentBasis.from_stack(U)
    P = U.shape[0]
    common = data.error_commonV and data.is_common_cov_Shat()
    Vs = data.error_V_stack()
    chunk = _chunk_rows(J, _per_row_bytes(basis, R, P), memory_bytes)
    res = np.empty((J, P))
    bad = np.zeros(P, bool)
    for a in range(0, J, chunk):
        b = min(J, a + chunk)
        V = Vs if data.error_commonV else Vs[a:b]
        res[a:b], bd = loglik_rows(data.Bhat[a:b], data.Shat[a:b], V, basis, common)
        bad |= bd
    nonfinite = ~np.isfinite(res).all(axis=0)
    if nonfinite.any():
        which = [_describe(names[p], grid) for p in np.flatnonzero(nonfinite)]
        warnings.warn(
            "Some mixture components result in non-finite likelihoods, either due to numerical "
            "underflow/overflow or invalid covariance matrices (component.grid index): "
            + ", ".join(which[:20]) + (" ..." if len(which) > 20 else ""), stacklevel=3)  # past the BLAS wrapper
    return res if log else np.exp(res)


def _describe(name: str, grid) -> str:
    """``"U.3"`` -> ``"U.3 (covariance U, grid value 0.5)"`` when the grid is known."""
    base, _, idx = name.rpartition(".")
    if grid is not None and base and idx.isdigit() and 0 < int(idx) <= len(grid):
        return f"{name} (covariance {base!r}, grid value {float(grid[int(idx) - 1]):.6g})"
    return name


@single_blas_thread
def calc_relative_lik_matrix(data: MashData, Ulist, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                             grid=None):
    """Row-max normalised log-likelihood (mashr ``calc_relative_lik_matrix``, P4).

    Returns
    -------
    dict
        ``loglik_matrix`` (J, P) = ``L - lfactors`` and ``lfactors`` (J,) = row maxima of
        the log-likelihood matrix L.
    """
    L = calc_lik_matrix(data, Ulist, log=True, memory_bytes=memory_bytes, grid=grid)
    lf = L.max(axis=1)
    with np.errstate(invalid="ignore"):
        L -= lf[:, None]                     # in place: the J x P matrix can be large
    return {"loglik_matrix": L, "lfactors": lf}
