r"""flashier's factor operations beyond greedy/backfit/nullcheck (port of flashier 1.0.60, BSD-3).

``flash_factors_init(fit, init, ebnm_fn)``
    Append user-supplied factors :math:`(L_0, F_0)` (two matrices, a low-rank ``(u, d, v)``, or
    another fit) with :math:`E[\ell^2] = \ell^2`, KL terms 0 and no prior yet; the residuals,
    precision and ELBO are recomputed (this "ELBO" has no prior fitted yet, so it can exceed
    the one after a backfit, as in flashier).
``flash_factors_reorder(fit, kset)``
    Permute the factors (``kset`` must list every factor once).
``flash_factors_set_to_zero(fit, kset)``
    Zero factors (kept, counted in K; the precision is re-estimated), as flashier.
``flash_factors_unfix(fit, kset)``
    Undo :func:`~mashlib.ebmf.flash_factors_fix`.
``flash_add_intercept(fit, rowwise=True, ebnm_fn)``
    A factor with loadings fixed at 1 (``rowwise``; else factors fixed at 1) initialised at the
    column (row) means of the residuals, then backfitted alone.
``flash_update_data(fit, newdata)``
    Replace the data keeping the factors; precision and ELBO are recomputed, verbose reset to 1
    (as flashier).
``flash_greedy_init_irlba(fit)``
    Greedy initialiser from the leading singular triplet of the residuals,
    :math:`(u\sqrt d, v\sqrt d)` (flashier uses irlba; a truncated SVD here).
``flash_ebnm(**args)``
    An ebnm function with some arguments fixed, for ``ebnm_fn``.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError
from .backfit import _valid_kset, flash_backfit
from .fit import FlashFit
from .greedy import check_fit, handle_ebnm_fn
from .lowrank import is_udv, udv_factors
from .ops import flash_factors_fix, select_factors, zero_factors

__all__ = ["flash_factors_init", "flash_factors_reorder", "flash_factors_set_to_zero", "flash_factors_unfix",
           "flash_add_intercept", "flash_update_data", "flash_greedy_init_irlba", "flash_ebnm"]


def _as_pair(init, n, p):
    """(EF, EF2 or None) from the accepted forms of ``init``."""
    if isinstance(init, FlashFit):
        return [e.copy() for e in init.EF], [e.copy() for e in init.EF2]
    if is_udv(init):
        return list(udv_factors(init, "init")), None
    if isinstance(init, (list, tuple)) and len(init) == 2:
        EF = []
        for X in init:
            try:
                X = np.array(X, dtype=float)
            except (TypeError, ValueError):
                raise MashInputError("init: must hold two numeric matrices (L, F).") from None
            EF.append(X[:, None] if X.ndim == 1 else X)
        return EF, None
    raise MashInputError("init: must be an SVD-like (u, d, v) object, a FlashFit, or a pair of matrices (L, F).")


def flash_factors_init(fit, init, ebnm_fn=None):
    r"""Add factors with given initial values (flashier's ``flash_factors_init``).

    Parameters
    ----------
    fit : FlashFit
    init : (L, F) pair of n x K and p x K matrices, ``{"u", "d", "v"}`` / SVDResult (``L = U\sqrt d``,
        ``F = V\sqrt d``), or a FlashFit (its posterior first and second moments)
    ebnm_fn : ebnm function or (loadings, factors) pair, optional
        Priors used when these factors are later backfitted (default point-normal).

    Returns
    -------
    FlashFit
        With K more factors, not yet valid (no prior fitted): the ELBO is that of the initial
        values with zero KL terms.
    """
    check_fit(fit)
    n, p = fit.dims
    EF, EF2 = _as_pair(init, n, p)
    shp = (EF[0].shape, EF[1].shape)
    if EF[0].ndim != 2 or EF[1].ndim != 2 or EF[0].shape[0] != n or EF[1].shape[0] != p \
            or EF[0].shape[1] != EF[1].shape[1]:
        raise MashInputError(f"init: shapes {shp[0]} (loadings) and {shp[1]} (factors) do not match the "
                             f"{n} x {p} data; pass L with {n} rows and F with {p} rows and the same number of columns.")
    if any(np.isnan(e).any() for e in EF):
        raise MashInputError("init: the initialization may not have missing data (NaN).")
    if EF2 is None:
        EF2 = [e * e for e in EF]
    K = EF[0].shape[1]
    fns, _ = handle_ebnm_fn(ebnm_fn)
    new = fit.copy()
    if K == 0:
        return new
    for m in (0, 1):
        new.EF[m] = np.column_stack([new.EF[m], EF[m]])
        new.EF2[m] = np.column_stack([new.EF2[m], EF2[m]])
    new.KL = np.column_stack([new.KL, np.zeros((2, K))])
    new.g += [[None, None] for _ in range(K)]
    new.fns += [fns] * K
    new.is_valid = np.append(new.is_valid, np.zeros(K, bool))
    new.is_zero = np.append(new.is_zero, np.zeros(K, bool))
    new.recompute()
    return new


def flash_factors_reorder(fit, kset):
    """Reorder the factors: factor ``kset[j]`` (0-based) becomes factor ``j``.

    Unlike flashier 1.0.60 (whose reordered fit cannot be backfitted: it drops the low-rank
    class of the moments), the result is a complete fit.
    """
    check_fit(fit)
    ks = _valid_kset(fit, kset)
    if sorted(ks) != list(range(fit.n_factors)):
        raise MashInputError(f"kset: must list every factor 0..{fit.n_factors - 1} exactly once; got {ks}.")
    return select_factors(fit.copy(), ks)


def flash_factors_set_to_zero(fit, kset):
    """Set factors to zero (they stay in the fit, counted in K); the precision is re-estimated."""
    return zero_factors(fit, kset)[0]


def flash_factors_unfix(fit, kset):
    """Let factors fixed by :func:`~mashlib.ebmf.flash_factors_fix` be updated again."""
    check_fit(fit)
    ks = _valid_kset(fit, kset)
    new = fit.copy()
    for k in ks:
        new.fix.pop(k, None)
    return new


def flash_add_intercept(fit, rowwise=True, ebnm_fn=None):
    r"""Add an "intercept" factor (flashier's ``flash_add_intercept``).

    ``rowwise=True``: loadings fixed at 1 and factors initialised at the column means of the
    residuals (an effect per column shared by all rows); ``False``: factors fixed at 1 and
    loadings at the row means. The new factor alone is then backfitted.
    """
    check_fit(fit)
    n, p = fit.dims
    R = fit.residuals()
    with np.errstate(invalid="ignore"):
        if rowwise:
            init = (np.ones((n, 1)), np.nanmean(R, axis=0)[:, None])
        else:
            init = (np.nanmean(R, axis=1)[:, None], np.ones((p, 1)))
    K = fit.n_factors
    new = flash_factors_init(fit, init, ebnm_fn=ebnm_fn)
    new = flash_factors_fix(new, [K], which_dim="loadings" if rowwise else "factors")
    return flash_backfit(new, kset=[K])


def flash_update_data(fit, newdata, Y2_diff=None):
    """Replace the data by ``newdata`` (same shape), keeping the factors; no refit.

    The residuals, precision and ELBO are recomputed and the verbosity reset to 1, as flashier.
    ``Y2_diff`` is accepted for flashier's signature and ignored (mashlib recomputes the
    sufficient statistics from the data).
    """
    from .ops import _as_matrix
    from .variance import make_varspec

    check_fit(fit)
    Y, rows, cols = _as_matrix(newdata)
    if Y.shape != fit.dims:
        raise MashInputError(f"newdata: shape {Y.shape} must match the fitted data's shape {fit.dims}.")
    if np.any(np.isinf(Y)):
        raise MashInputError("newdata: contains infinite values; replace them by NaN (missing) or finite values.")
    miss = np.isnan(Y)
    Z = (~miss).astype(float) if miss.any() else None
    Y = np.where(miss, 0.0, Y)
    new = fit.copy()
    new.Y, new.Z = Y, Z
    S, var_type, S_dim = getattr(fit, "init_args", (None, 0, None))
    new.spec = make_varspec(Y, Z, S, var_type, S_dim)
    if rows is not None:
        new.row_names, new.col_names = rows, cols
    new.tau = None
    new._rebuild_residuals()
    from .variance import estimate_tau

    new.tau = estimate_tau(new.spec, new.Z, new.R, new.V, None)
    new.obj = float(new.KL.sum()) + new.tau.lik
    new.verbose = 1
    return new


def flash_greedy_init_irlba(fit, seed=666, **kwargs):
    r"""Greedy initialiser: the leading singular triplet of the residuals, :math:`(u\sqrt d, v\sqrt d)`.

    flashier calls ``irlba``; here a truncated SVD (ARPACK for large matrices, LAPACK otherwise).
    The sign is chosen so that the largest entry of :math:`u` is positive. Missing data are not
    allowed (as flashier).
    """
    check_fit(fit)
    if fit.Z is not None:
        raise MashInputError("flash_greedy_init_irlba: cannot be used when there is missing data; use "
                             "flash_greedy_init_default.")
    R = fit.Y - fit.fitted()
    if min(R.shape) <= 200:
        U, d, Vt = np.linalg.svd(R, full_matrices=False)
        u, dd, v = U[:, 0], d[0], Vt[0]
    else:
        from scipy.sparse.linalg import svds

        v0 = np.random.default_rng(seed).standard_normal(min(R.shape))
        U, d, Vt = svds(R, k=1, v0=v0, **kwargs)
        u, dd, v = U[:, 0], d[0], Vt[0]
    if u[np.argmax(np.abs(u))] < 0:
        u, v = -u, -v
    r = np.sqrt(dd)
    return [u * r, v * r]


def flash_ebnm(**args):
    """An ebnm function with some arguments fixed, for ``ebnm_fn`` (flashier's ``flash_ebnm``).

    ``flash_ebnm(prior_family="point_laplace", mode="estimate")`` returns
    ``fn(x, s, g_init, fix_g, output)`` calling :func:`mashlib.ebnm` with those arguments.
    ``x``, ``s`` and ``output`` may not be fixed; ``g_init`` may only be fixed together with
    ``fix_g=True``. With ``group`` the call goes to :func:`mashlib.ebnm_group`.
    """
    import warnings

    bad = sorted({"x", "s", "output"} & set(args))
    if bad:
        raise MashInputError(f"flash_ebnm: {bad} must not be supplied ('x', 's' and 'output' are set by flash).")
    fixed = "g_init" in args or "fix_g" in args
    if fixed:
        if args.get("g_init") is None:
            raise MashInputError("flash_ebnm: if 'fix_g' is supplied then 'g_init' must be as well.")
        if not args.get("fix_g"):
            raise MashInputError("flash_ebnm: if 'g_init' is supplied it must be fixed (fix_g=True); to fix the "
                                 "grid of the prior use 'scale' instead.")
    group = args.get("group")

    def fn(x, s, g_init=None, fix_g=False, output=None):
        from ..eb.ebnm import DEFAULT_OUTPUT, ebnm, ebnm_group

        out = DEFAULT_OUTPUT if output is None else output
        call = dict(args)
        if not fixed:
            call.update(g_init=g_init, fix_g=fix_g)
        if group is not None:
            grp = np.asarray(call.pop("group"))
            x = np.asarray(x, float)
            if x.size != grp.size:  # flash's sign test on (-10, 0, 10)
                x = np.resize(x, grp.size)
                s = np.resize(np.broadcast_to(np.asarray(s, float), (3,)) if np.ndim(s) == 0 else s, grp.size)
            return ebnm_group(x, s, group=grp, output=out, **call)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ebnm(x, s, output=out, **call)

    fn.__name__ = "flash_ebnm(" + ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "group") + ")"
    return fn
