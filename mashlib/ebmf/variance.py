r"""Residual precision (``tau``) estimation and the likelihood part of the ELBO.

Model. The EBMF model (Wang & Stephens 2021) is

.. math::

    Y = L F^\top + E, \qquad e_{ij} \sim N(0, 1/\tau_{ij}),
    \qquad \ell_{\cdot k} \sim g^{(\ell)}_k,\ f_{\cdot k} \sim g^{(f)}_k .

With a mean-field posterior :math:`q(L) q(F)`, the expected squared residual is

.. math::

    \overline{R^2}_{ij} = z_{ij}\Big[\big(y_{ij} - \textstyle\sum_k \bar\ell_{ik}\bar f_{jk}\big)^2
      + \textstyle\sum_k \big(\overline{\ell^2_{ik}}\,\overline{f^2_{jk}}
      - \bar\ell_{ik}^2 \bar f_{jk}^2\big)\Big],

(:math:`z_{ij} = 0` for a missing cell), and the ELBO is

.. math::

    F(q, g, \tau) = \sum_{k,n} \mathrm{KL}_{k,n}
      - \tfrac12 \sum_{ij} z_{ij}\big[\log(2\pi) - \log\tau_{ij}
      + \tau_{ij}\overline{R^2}_{ij}\big],

where :math:`\mathrm{KL}_{k,n}` (really minus a KL divergence) is the ebnm
log-likelihood minus the expected normal-means log-likelihood
(:func:`mashlib.ebmf.update.normal_means_loglik`).

Variance structures, as flashier 1.0.60 (``R/tau.R``, ``R/objective.R``):

``simple``
    var_type 0 (one :math:`\tau`), 1 (per row) or 2 (per column), optionally with
    known SEs along the same mode (or a scalar S). With :math:`n_s` observed cells
    and :math:`R^2_s` the summed expected squared residual in slice *s*,
    :math:`\hat\tau_s = n_s / \max(R^2_s, \epsilon)` and
    :math:`\tau_s = \min(1/S^2, \hat\tau_s)` when S is given (S is a floor on the
    variance). Likelihood term :math:`-\frac12\sum_s n_s(\log 2\pi - \log\tau_s +
    \tau_s/\hat\tau_s)`.
``zero``
    ``var_type=None``: :math:`\tau = 1/S^2` fixed; term
    :math:`-\frac12(\sum_{\tau>0}\log(2\pi/\tau) + \sum\tau\overline{R^2})`.
``kron``
    ``var_type=(1, 2)``: :math:`\tau_{ij} = \tau^{(1)}_i\tau^{(2)}_j`, alternating
    closed-form updates (at most 100, until the relative change is below
    :math:`\sqrt\epsilon`); term :math:`-\frac12(N(\log 2\pi + 1) - \sum_n\sum_s
    n_{s}\log\tau^{(n)}_s)`.
``noisy`` / ``noisy_kron``
    S given along a different mode than the estimated variance:
    :math:`\tau_{ij} = 1/(s^2_{ij} + \sigma^2_{\cdot})` with the extra variance
    :math:`\sigma^2` of each slice minimising
    :math:`\sum\log(\sigma^2 + s^2) + \sum R^2/(\sigma^2 + s^2)` on
    :math:`[0, \max(R^2 - s^2)]` (a vectorised golden-section search here, R's
    ``optimize`` in flashier).

Everything is recomputed from the residual matrix, so the precision can never
go negative through accumulated drift (flashier issue #104).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import MashInputError

EPS = np.finfo(float).eps
LOG2PI = np.log(2.0 * np.pi)


@dataclass
class VarSpec:
    """How the residual precision is modelled (fixed for a fit).

    ``kind`` is one of ``simple``, ``zero``, ``kron``, ``noisy``, ``noisy_kron``;
    ``est_dims`` the estimated modes (flashier's 1-based ``var_type``: () for
    None, (0,), (1,), (2,) or (1, 2)); ``r2_mode`` the mode along which R2 is
    summed for ``simple`` (0 = scalar); ``given_tau`` / ``given_S2`` the known
    SEs stored as precision or variance (0 / inf in missing cells).
    """

    kind: str
    est_dims: tuple
    r2_mode: int = 0
    given_tau: Any = None
    given_tau_dim: Any = None
    given_S2: Any = None
    n_nonmissing: Any = None
    kron_nonmissing: Any = None
    log_2pi_s2: float = 0.0


@dataclass
class TauState:
    """Current precision: ``tau`` as flashier stores it, plus the full matrix.

    ``full`` is the n x p precision with zeros in missing cells, ``lik`` the
    likelihood term of the ELBO, ``var_from_tau`` the residual variance used in
    the PVE denominator, ``est`` the extra bookkeeping of each kind
    (``est_tau``, ``est_S2``).
    """

    tau: Any
    full: np.ndarray
    lik: float
    var_from_tau: float
    est: Any = None
    extra: dict = field(default_factory=dict)


def normalise_var_type(var_type):
    """Map the user's ``var_type`` to a tuple of 1-based modes (() for None)."""
    if var_type is None:
        return ()
    vt = np.atleast_1d(np.asarray(var_type)).ravel().tolist()
    try:
        vt = tuple(int(v) for v in vt)
    except (TypeError, ValueError):
        raise MashInputError(f"var_type: {var_type!r} is not valid; use 0, 1, 2, (1, 2) or None.") from None
    if vt in ((0,), (1,), (2,), (1, 2)):
        return vt
    if vt == (2, 1):
        return (1, 2)
    raise MashInputError(f"var_type: {var_type!r} is not valid; use 0 (constant), 1 (by row), "
                         "2 (by column), (1, 2) (Kronecker) or None (S only).")


def make_varspec(Y: np.ndarray, Z, S, var_type, S_dim=None) -> VarSpec:
    """Build the :class:`VarSpec` from the data, the known SEs ``S`` and ``var_type``.

    S may be a scalar, a vector whose length matches one dimension, or an n x p
    matrix. As flashier's ``is.S2.stored``: S is stored as a precision (and acts
    as a floor on the variance) when it is a scalar or lies along the estimated
    mode; otherwise it is stored as a variance and the "noisy" updates are used.
    """
    n, p = Y.shape
    est = normalise_var_type(var_type)
    miss = Z is not None
    if S_dim is not None and S_dim not in (1, 2):
        raise MashInputError(f"S_dim: {S_dim!r} must be 1 (S varies by row) or 2 (by column).")
    given_dim = S_dim
    S_dim = None
    if S is not None:
        S = np.asarray(S, dtype=float)
        if S.ndim == 0 or S.size == 1:
            S = float(S.ravel()[0])
            S_dim = 0
        elif S.ndim == 1:
            if given_dim is not None:
                if S.size != (n, p)[given_dim - 1]:
                    raise MashInputError(f"S: length {S.size} does not match dimension S_dim={given_dim} "
                                         f"of the {n} x {p} data.")
                S_dim = given_dim
            elif n == p and S.size == n:
                raise MashInputError("S: a vector S is ambiguous for a square data matrix; pass S_dim=1 or 2.")
            elif S.size == n:
                S_dim = 1
            elif S.size == p:
                S_dim = 2
            else:
                raise MashInputError(f"S: length {S.size} matches neither the {n} rows nor the {p} columns of the data.")
        elif S.ndim == 2:
            if S.shape != (n, p):
                raise MashInputError(f"S: shape {S.shape} differs from the data shape {(n, p)}.")
        else:
            raise MashInputError("S: must be a scalar, a vector or a matrix.")
        Sv = np.atleast_1d(np.asarray(S, dtype=float))
        observed = np.ones(Sv.shape, bool) if (Sv.ndim != 2 or not miss) else Z.astype(bool)
        if np.any((Sv <= 0) & observed):
            raise MashInputError("S: standard errors must be strictly positive (found zeros or negatives); "
                                 "remove those cells or set them to NaN in the data.")
        if np.any(~np.isfinite(Sv) & observed):
            raise MashInputError("S: standard errors must be finite (found NaN or inf); for a missing cell set "
                                 "the data to NaN instead.")
    if not est and S is None:
        raise MashInputError("var_type=None requires S (all residual variance is then given by S).")

    stored_S2 = S is not None and len(est) > 0 and (len(est) > 1 or S_dim is None or (S_dim > 0 and S_dim != est[0]))
    spec = VarSpec(kind="", est_dims=est)
    if stored_S2:
        if miss and len(est) > 1:
            raise MashInputError("S with var_type=(1, 2) (noisy Kronecker) is not implemented for missing data, "
                                 "as in flashier; drop S or the missing cells.")
        S2 = np.broadcast_to(_expand(np.asarray(S, float) ** 2, S_dim, (n, p)), (n, p)).copy()
        if miss:
            S2[Z == 0] = np.inf
        spec.given_S2 = S2
        spec.kind = "noisy" if len(est) == 1 else "noisy_kron"
        return spec
    if S is not None:
        tau = 1.0 / np.asarray(S, float) ** 2
        if tau.ndim == 2 and miss:
            tau = np.where(Z == 0, 0.0, tau)
        spec.given_tau = float(tau) if tau.ndim == 0 else tau
        spec.given_tau_dim = S_dim
    simple = (not est and S_dim is not None) or (len(est) == 1 and S is None) or \
        (len(est) == 1 and S_dim is not None and S_dim in (0, est[0]))
    if simple:
        spec.kind = "simple"
        r2 = max(max(est) if est else 0, S_dim or 0, 0)
        spec.r2_mode = r2
        if r2 == 0 and est != (0,):
            spec.r2_mode = 1 if n <= p else 2
        spec.n_nonmissing = _count(Z, spec.r2_mode, (n, p))
    elif not est:
        spec.kind = "zero"
        t = spec.given_tau
        spec.log_2pi_s2 = float(np.sum(np.log(2 * np.pi / t[t > 0])))
    else:
        spec.kind = "kron"
        spec.kron_nonmissing = [_count(Z, 1, (n, p)), _count(Z, 2, (n, p))]
    return spec


def _count(Z, mode, shape):
    n, p = shape
    if mode == 0:
        return float(n * p if Z is None else Z.sum())
    if Z is None:
        return np.full(shape[mode - 1], float(shape[2 - mode]))
    return Z.sum(axis=2 - mode).astype(float)


def _expand(v, mode, shape):
    """Broadcast a scalar (mode 0), row vector (mode 1) or column vector (2) to ``shape``."""
    v = np.asarray(v, float)
    if v.ndim == 2 or mode in (0, None):
        return np.broadcast_to(v, shape)
    if mode == 1:
        return np.broadcast_to(v[:, None], shape)
    return np.broadcast_to(v[None, :], shape)


def _slice_sum(M, mode):
    if mode == 0:
        return float(M.sum())
    return M.sum(axis=2 - mode)


def estimate_tau(spec: VarSpec, Z, R, V, prev: TauState | None = None) -> TauState:
    """Estimate the residual precision from scratch.

    Parameters
    ----------
    spec : VarSpec
    Z : ndarray or None
        0/1 mask of observed cells (None: all observed).
    R : ndarray
        Residual matrix :math:`Z \\circ (Y - \\bar L \\bar F^\\top)`.
    V : ndarray
        Variance part :math:`Z \\circ (\\overline{L^2}\\,\\overline{F^2}^\\top
        - \\bar L^2 \\bar F^{2\\top})` of the expected squared residual.
    prev : TauState, optional
        Starting point for the iterative (Kronecker) updates.
    """
    shape = R.shape
    kind = spec.kind
    if kind == "simple":
        m = spec.r2_mode
        R2 = _slice_sum(R * R + V, m)
        est = spec.n_nonmissing / np.maximum(R2, EPS)
        if not spec.est_dims:
            tau = spec.given_tau
        elif spec.given_tau is None:
            tau = est
        else:
            tau = np.minimum(spec.given_tau, est)
        nn = spec.n_nonmissing
        lik = -0.5 * float(np.sum(nn * (LOG2PI - np.log(tau) + tau / est)))
        tau_m = spec.given_tau_dim if (not spec.est_dims) else m
        full = np.array(_expand(tau, tau_m, shape), dtype=float)
        if Z is not None:
            full = full * Z
        vft = float(np.sum(nn / tau)) if np.ndim(tau) == np.ndim(nn) or np.ndim(tau) == 0 else float(np.sum(full[full > 0] ** -1))
        return TauState(tau=tau, full=full, lik=lik, var_from_tau=vft, est=est)
    if kind == "zero":
        t = spec.given_tau
        full = np.array(_expand(t, spec.given_tau_dim, shape), dtype=float)
        if Z is not None:
            full = full * Z
        lik = -0.5 * (spec.log_2pi_s2 + float(np.sum(full * (R * R + V))))
        return TauState(tau=t, full=full, lik=lik, var_from_tau=float(np.sum(1.0 / full[full > 0])))
    if kind == "kron":
        return _kron_tau(spec, Z, R, V, prev)
    return _noisy_tau(spec, Z, R, V, prev)


def _l2n(v):
    nv = np.sqrt(np.sum(v * v))
    return v / (nv if nv != 0 else 1.0)


def _kron_tau(spec, Z, R, V, prev):
    n, p = R.shape
    tau = [np.ones(n), np.ones(p)] if prev is None else [np.array(prev.tau[0], float), np.array(prev.tau[1], float)]
    R2 = np.maximum(R * R, np.sqrt(EPS))
    M = R2 + V  # the flooring applies to the squared residual only, as flashier
    k1, k2 = spec.kron_nonmissing
    tol = np.sqrt(EPS)
    for _ in range(100):
        old = [tau[0], tau[1]]
        tau[0] = k1 / np.maximum(M @ tau[1], EPS)
        tau[1] = k2 / np.maximum(M.T @ tau[0], EPS)
        chg = max(np.max(np.abs(_l2n(tau[0]) - _l2n(old[0]))), np.max(np.abs(_l2n(tau[1]) - _l2n(old[1]))))
        if chg / max(tau[0].max(), tau[1].max()) <= tol:
            break
    full = np.outer(tau[0], tau[1])
    if Z is not None:
        full = full * Z
    N = float(np.sum(k1))
    lik = -0.5 * (N * (LOG2PI + 1.0) - float(np.sum(k1 * np.log(tau[0])) + np.sum(k2 * np.log(tau[1]))))
    vft = float(np.sum((1.0 if Z is None else Z) / np.outer(tau[0], tau[1])))
    return TauState(tau=tau, full=full, lik=lik, var_from_tau=vft)


def _golden_min(f, hi, iters=80):
    """Vectorised golden-section minimisation of ``f`` on [0, hi] (elementwise).

    ``f`` maps a vector of abscissae (one per problem) to the objective values.
    80 iterations shrink each interval by 0.618**80 ~ 2e-17 of its length.
    """
    gr = (np.sqrt(5.0) - 1.0) / 2.0
    a = np.zeros_like(hi, dtype=float)
    b = np.asarray(hi, dtype=float).copy()
    c = b - gr * (b - a)
    d = a + gr * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        left = fc < fd  # the minimum lies in [a, d]
        a = np.where(left, a, c)
        b = np.where(left, d, b)
        c_new = np.where(left, b - gr * (b - a), d)
        d_new = np.where(left, c, a + gr * (b - a))
        z = np.where(left, c_new, d_new)
        fz = f(z)
        fc, fd = np.where(left, fz, fd), np.where(left, fc, fz)
        c, d = c_new, d_new
    x = 0.5 * (a + b)
    return np.where(hi > 0, x, 0.0)


def _optimize_noisy(R2, S2, W, mask, axis):
    """Minimise sum log(w x + s2) + R2/(w x + s2) over x >= 0, one x per slice.

    Slices run along ``axis`` (the summed axis is the other one); ``W`` holds the
    weights (1, or the other mode's variances for the Kronecker case).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(mask, (R2 - S2) / W, -np.inf)
    hi = np.max(ratio, axis=1 - axis)
    hi = np.where(np.isfinite(hi) & (hi > 0), hi, 0.0)

    def f(x):
        xs = x[:, None] if axis == 0 else x[None, :]
        d = W * xs + S2
        with np.errstate(invalid="ignore", divide="ignore"):
            val = np.where(mask, np.log(d) + R2 / d, 0.0)
        return val.sum(axis=1 - axis)

    return _golden_min(f, hi)


def _noisy_tau(spec, Z, R, V, prev):
    n, p = R.shape
    S2 = spec.given_S2
    mask = np.ones((n, p), bool) if Z is None else Z.astype(bool)
    R2 = R * R + V
    if spec.kind == "noisy":
        m = spec.est_dims[0]
        if m == 0:
            hi = np.array([max(0.0, float(np.max(np.where(mask, R2 - S2, -np.inf))))])
            def f(x):
                d = x[0] + S2
                return np.array([np.sum(np.where(mask, np.log(d) + R2 / d, 0.0))])
            est = _golden_min(f, hi)
            full_var = S2 + est[0]
        else:
            est = _optimize_noisy(R2, S2, 1.0, mask, m - 1)
            full_var = S2 + (est[:, None] if m == 1 else est[None, :])
    else:
        est = [np.ones(n), np.ones(p)] if prev is None or prev.est is None else [np.array(e) for e in prev.est]
        tol = np.sqrt(EPS)
        for _ in range(100):
            old = [est[0], est[1]]
            est[0] = _optimize_noisy(R2, S2, np.broadcast_to(est[1][None, :], (n, p)), mask, 0)
            est[1] = _optimize_noisy(R2, S2, np.broadcast_to(est[0][:, None], (n, p)), mask, 1)
            mx = max(est[0].max(), est[1].max())
            chg = max(np.max(np.abs(_l2n(est[0]) - _l2n(old[0]))), np.max(np.abs(_l2n(est[1]) - _l2n(old[1]))))
            if mx <= 0 or chg / mx <= tol:
                break
        full_var = S2 + np.outer(est[0], est[1])
    with np.errstate(divide="ignore"):
        full = np.where(mask, 1.0 / full_var, 0.0)
    sum_tau_R2 = float(np.sum(full * R2))
    pos = full > 0
    lik = -0.5 * (float(np.sum(np.log(2 * np.pi / full[pos]))) + sum_tau_R2)
    return TauState(tau=full, full=full, lik=lik, var_from_tau=float(np.sum(1.0 / full[pos])), est=est,
                    extra={"sum_tau_R2": sum_tau_R2})


def tau_with(spec: VarSpec, Z, state: TauState, tau) -> TauState:
    """A copy of ``state`` whose precision is ``tau`` (used by extrapolation)."""
    shape = state.full.shape
    if spec.kind == "kron":
        full = np.outer(tau[0], tau[1])
    elif spec.kind == "simple":
        m = spec.given_tau_dim if not spec.est_dims else spec.r2_mode
        full = np.array(_expand(tau, m, shape), dtype=float)
    elif spec.kind == "zero":
        full = np.array(_expand(tau, spec.given_tau_dim, shape), dtype=float)
    else:
        full = np.array(tau, dtype=float)
    if Z is not None:
        full = full * Z
    return TauState(tau=tau, full=full, lik=state.lik, var_from_tau=state.var_from_tau, est=state.est,
                    extra=dict(state.extra))
