r"""``flash_init``, ``flash_nullcheck``, factor removal / fixing, and ``flash``.

``flash(Y, ...)`` = ``flash_init`` -> ``flash_greedy(Kmax)`` -> [``flash_backfit``]
-> [``flash_nullcheck``], as flashier 1.0.60.
"""
from __future__ import annotations

import numpy as np

from .._blas import single_blas_thread
from .._errors import MashInputError
from .backfit import _valid_kset, flash_backfit
from .fit import Factor, FlashFit
from .greedy import _int_arg, check_fit, flash_greedy, vprint
from .variance import make_varspec, normalise_var_type


def _as_matrix(data):
    from .lowrank import is_udv, udv_factors

    rows = cols = None
    if is_udv(data):
        # flashier's list(u, d, v): mashlib forms the dense n x p matrix U diag(d) V'
        A, B = udv_factors(data, "data")
        data = A @ B.T
    if hasattr(data, "to_numpy") and hasattr(data, "columns"):
        rows = [str(r) for r in data.index]
        cols = [str(c) for c in data.columns]
        data = data.to_numpy(dtype=float)
    try:
        Y = np.array(data, dtype=float)
    except (TypeError, ValueError):
        raise MashInputError("data: must be a numeric matrix (ndarray or DataFrame).") from None
    if Y.ndim != 2:
        raise MashInputError(f"data: must be a 2-D matrix; got {Y.ndim} dimension(s).")
    if Y.shape[0] < 2 or Y.shape[1] < 2:
        raise MashInputError(f"data: needs at least 2 rows and 2 columns; got shape {Y.shape}.")
    return Y, rows, cols


def flash_init(data, S=None, var_type=0, S_dim=None, verbose=1):
    r"""Set up a flash fit with no factors.

    Parameters
    ----------
    data : array_like, DataFrame, or low-rank ``{"u": U, "d": d, "v": V}`` (or numpy's SVDResult), n x p
        The data Y; NaN marks missing cells (they get zero precision). A low-rank
        representation (flashier's ``list(u, d, v)``) is expanded to :math:`U\,\mathrm{diag}(d)V^\top`.
    S : float, vector or n x p matrix, optional
        Known standard errors. The model becomes :math:`Y = LF^\top + S + E`: with
        S along the estimated mode (or scalar) it floors the residual variance;
        otherwise the extra variance is estimated per slice ("noisy").
    var_type : {0, 1, 2, (1, 2), None}
        Constant, by-row, by-column or Kronecker precision; None: S only.
    S_dim : {None, 1, 2}
        Mode along which a vector S varies (inferred from its length unless the
        data are square).
    verbose : int

    Returns
    -------
    FlashFit
    """
    Y, rows, cols = _as_matrix(data)
    if np.any(np.isinf(Y)):
        raise MashInputError("data: contains infinite values; replace them by NaN (missing) or finite values.")
    miss = np.isnan(Y)
    n, p = Y.shape
    bad_r = np.flatnonzero(miss.all(axis=1))
    bad_c = np.flatnonzero(miss.all(axis=0))
    if bad_r.size:
        raise MashInputError(f"data: row(s) {bad_r[:10].tolist()} (0-based) are entirely missing; drop them.")
    if bad_c.size:
        raise MashInputError(f"data: column(s) {bad_c[:10].tolist()} (0-based) are entirely missing; drop them.")
    Z = (~miss).astype(float) if miss.any() else None
    Y = np.where(miss, 0.0, Y)
    est = normalise_var_type(var_type)
    for m in est:
        if m == 0 and not np.any(Y != 0):
            raise MashInputError("data: all values are zero; the residual variance cannot be estimated.")
        if m in (1, 2):
            zero = np.flatnonzero(~np.any(Y != 0, axis=2 - m))
            if zero.size:
                what = "row" if m == 1 else "column"
                raise MashInputError(f"data: {what}(s) {zero[:10].tolist()} (0-based) are all zero, so their "
                                     f"residual variance (var_type={var_type}) cannot be estimated; drop them.")
    spec = make_varspec(Y, Z, S, var_type, S_dim)
    fit = FlashFit(Y, Z, spec, rows, cols, verbose=verbose)
    fit.init_args = (S, var_type, S_dim)  # for flash_update_data
    return fit


def _zero_factor(fit, k):
    n, p = fit.dims
    fac = Factor([np.zeros(n), np.zeros(p)], [np.zeros(n), np.zeros(p)], k=k, fns=fit.fns[k])
    fac.g = [None, None]
    fac.is_zero = True
    fac.is_valid = True
    return fac


def _nullcheck_factor(fit: FlashFit, k, tol, lvl):
    if not fit.is_valid[k] or fit.is_zero[k]:
        return fit
    fac = _zero_factor(fit, k)
    Rk, Vk = fit.residuals_without(k)
    Rn, Vn = fit.factor_tau_obj(fac, Rk, Vk)
    diff = fac.obj - fit.obj
    if diff >= -tol:
        fit.insert_factor(fac, Rn, Vn, update_tau=True)
        fit.flags["nullchk_fail"] = True
        if np.isfinite(tol):
            if diff > 0:
                vprint(lvl, f"Factor {k + 1} set to zero, increasing objective by {diff:.3e}.")
            elif diff == 0:
                vprint(lvl, f"Factor {k + 1} set to zero with no change to objective.")
            else:
                vprint(lvl, f"Factor {k + 1} set to zero, decreasing objective by {-diff:.3e}.")
    return fit


def select_factors(fit: FlashFit, idx) -> FlashFit:
    """Keep the factors ``idx`` (0-based, in that order) of ``fit``, in place: loadings,
    factors, KL terms, priors, flags and the fixed entries (renumbered). Returns ``fit``."""
    idx = [int(k) for k in idx]
    for n in (0, 1):
        fit.EF[n] = fit.EF[n][:, idx]
        fit.EF2[n] = fit.EF2[n][:, idx]
    fit.KL = fit.KL[:, idx]
    fit.g = [fit.g[k] for k in idx]
    fit.fns = [fit.fns[k] for k in idx]
    fit.is_zero = fit.is_zero[idx]
    fit.is_valid = fit.is_valid[idx]
    pos = {old: j for j, old in enumerate(idx)}
    fit.fix = {pos[k]: v for k, v in fit.fix.items() if k in pos}
    return fit


def _drop(fit: FlashFit, kset):
    select_factors(fit, np.setdiff1d(np.arange(fit.n_factors), kset))
    fit.recompute()
    return fit


def flash_nullcheck(fit, kset=None, remove=True, tol=None, verbose=None):
    """Zero each factor whose removal does not lower the ELBO by more than ``tol``.

    Each factor in ``kset`` (0-based; default all) is set to zero with the
    precision re-estimated; the zeroed fit is kept when
    :math:`F_{\\text{zeroed}} - F \\ge -\\text{tol}` (default sqrt(eps) n p).
    Zeroed factors are removed when ``remove``.
    """
    check_fit(fit)
    lvl = fit.verbose if verbose is None else int(verbose)
    tol = fit.conv_tol if tol is None else float(tol)
    fit = fit.copy()
    if fit.n_factors == 0:
        vprint(lvl, "No factors have been added. Skipping nullcheck.")
        vprint(lvl, "Done.")
        return fit
    kset = _valid_kset(fit, kset)
    vprint(lvl, f"Nullchecking {len(kset)} factors...")
    nz = int(fit.is_zero.sum())
    if nz == 1:
        vprint(lvl, "  One factor is identically zero.")
    elif nz > 1:
        vprint(lvl, f"  {nz} factors are identically zero.")
    for k in kset:
        fit = _nullcheck_factor(fit, k, tol, lvl)
    if fit.is_zero.any():
        vprint(lvl, "Wrapping up...")
        if remove:
            nrem = int(fit.is_zero.sum())
            fit = _drop(fit, np.flatnonzero(fit.is_zero))
            vprint(lvl, "  Removed one factor." if nrem == 1 else f"  Removed {nrem} factors.")
    vprint(lvl, "Done.")
    return fit


def zero_factors(fit, kset):
    """A copy of ``fit`` with the factors ``kset`` (checked, 0-based) set to zero and the
    precision re-estimated; returns ``(fit, kset)``."""
    check_fit(fit)
    kset = _valid_kset(fit, kset)
    fit = fit.copy()
    for k in kset:
        fit = _nullcheck_factor(fit, k, np.inf, 0)
    return fit, kset


def flash_factors_remove(fit, kset):
    """Remove the factors in ``kset`` (0-based), re-estimating the precision."""
    fit, kset = zero_factors(fit, kset)
    return _drop(fit, kset)


def flash_factors_fix(fit, kset, which_dim="factors", fixed_idx=None):
    """Hold factors (or loadings) at their current values during backfits.

    Parameters
    ----------
    kset : sequence of int (0-based)
    which_dim : {"factors", "loadings"}
    fixed_idx : None, bool vector, or index vector
        Which entries of the chosen mode are fixed (default all).
    """
    check_fit(fit)
    if which_dim not in ("factors", "loadings"):
        raise MashInputError(f"which_dim: {which_dim!r} is not 'factors' or 'loadings'.")
    kset = _valid_kset(fit, kset)
    mode = 1 if which_dim == "factors" else 0
    size = fit.dims[mode]
    if fixed_idx is None:
        idx = np.arange(size)
    else:
        fi = np.asarray(fixed_idx)
        if fi.dtype == bool:
            if fi.size != size:
                raise MashInputError(f"fixed_idx: a boolean mask must have length {size}.")
            idx = np.flatnonzero(fi)
        else:
            idx = np.unique(fi.astype(int))
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                raise MashInputError(f"fixed_idx: indices must lie in 0..{size - 1}.")
    fit = fit.copy()
    for k in kset:
        if k in fit.fix and fit.fix[k][0] != mode:
            raise MashInputError("kset: a factor can only be fixed along a single mode.")
        fit.fix[k] = (mode, idx)
    return fit


@single_blas_thread
def flash(data, S=None, ebnm_fn=None, var_type=0, greedy_Kmax=50, backfit=False, nullcheck=True, verbose=1):
    """Empirical Bayes matrix factorisation (flashier's ``flash``).

    Fits :math:`Y = LF^\\top + E` with :math:`e_{ij}\\sim N(0, 1/\\tau_{ij})`,
    :math:`\\ell_{\\cdot k}\\sim g^{(\\ell)}_k`, :math:`f_{\\cdot k}\\sim g^{(f)}_k`
    (priors estimated by the ebnm functions) by maximising the ELBO: greedy
    addition of up to ``greedy_Kmax`` factors, then optional backfit and
    nullcheck.

    Parameters
    ----------
    data : array_like or DataFrame (n x p); NaN = missing.
    S : known standard errors (scalar, vector or matrix), optional.
    ebnm_fn : ebnm function or (loadings, factors) pair; default ``ebnm_point_normal``.
    var_type : 0, 1, 2, (1, 2) or None.
    greedy_Kmax : int >= 1.
    backfit, nullcheck : bool.
    verbose : int.

    Returns
    -------
    FlashFit
    """
    greedy_Kmax = _int_arg("greedy_Kmax", greedy_Kmax)
    fl = flash_init(data, S=S, var_type=var_type, verbose=verbose)
    fl = flash_greedy(fl, Kmax=greedy_Kmax, ebnm_fn=ebnm_fn, verbose=verbose)
    if backfit:
        fl = flash_backfit(fl, verbose=verbose)
    if nullcheck:
        fl = flash_nullcheck(fl, verbose=verbose)
    return fl
