r"""Backfitting: re-optimise all factors jointly (flashier's ``flash_backfit``).

With ``extrapolate=True`` (default) each iteration proposes

.. math::

    \tilde\theta = \theta + \beta(\theta - \theta_{\text{old}})

for the posterior moments and the precision (second moments floored at
:math:`\bar x^2 + 10^{-10}`, precisions at :math:`10^{-10}`), updates every
factor in turn on the proposal with the precision held fixed, then
re-estimates the precision from scratch. The proposal is accepted when its
ELBO gains at least ``tol`` over the current fit (then :math:`\beta \leftarrow
\min(1.2\beta, 2)`); otherwise a plain sweep is done and :math:`\beta` is
halved. :math:`\beta` starts at 0.5/1.2. With ``extrapolate=False`` factors are
updated one at a time, each update (with its own precision re-estimate) kept
only if it raises the ELBO. Iteration stops when the ELBO change is at most
``tol`` (default :math:`\sqrt\epsilon\, np`) or after ``maxiter`` iterations. The criterion is the
fit's (``flash_set_conv_crit``, default the ELBO difference) and a timeout set by
``flash_set_timeout`` stops the loop with the fit reached so far.
"""
from __future__ import annotations

import numpy as np

from .._blas import single_blas_thread
from .control import Snapshot, is_timed_out, print_entry, print_header, report_timeout, update_info
from .fit import FlashFit
from .greedy import _int_arg, check_fit, vprint
from .update import update_factor
from .variance import tau_with


def _valid_kset(fit, kset):
    from .._errors import MashInputError

    if kset is None:
        return list(range(fit.n_factors))
    ks = [int(k) for k in np.atleast_1d(kset)]
    if any(k < 0 or k >= fit.n_factors for k in ks):
        raise MashInputError(f"kset: factor indices must lie in 0..{fit.n_factors - 1} (0-based); got {ks}.")
    return ks


def _update_kset(fit: FlashFit, kset, warmstart):
    """Update each factor in ``kset`` with the fit's precision held fixed, then re-estimate."""
    T = fit.tau.full
    for k in kset:
        if fit.is_zero[k]:
            continue
        fac = fit.factor(k)
        Rk, Vk = fit.residuals_without(k)
        update_factor(fac, T, Rk, fac.fns, fixed=fit.fix.get(k), warmstart=warmstart)
        fac.is_valid = True
        Rn, Vn = fit.candidate(fac, Rk, Vk)
        fit.insert_factor(fac, Rn, Vn, update_tau=False)
    fit.recompute()
    return fit


def _update_one(fit: FlashFit, k, warmstart, lvl):
    """Sequential update of factor k, kept only if the ELBO increases."""
    if fit.is_zero[k]:
        return fit
    fac = fit.factor(k)
    fac.tau = None
    Rk, Vk = fit.residuals_without(k)
    update_factor(fac, fit.tau.full, Rk, fac.fns, fixed=fit.fix.get(k), warmstart=warmstart)
    Rn, Vn = fit.factor_tau_obj(fac, Rk, Vk)
    fac.is_valid = True
    if fac.obj > fit.obj or not bool(np.all(fit.is_valid)):
        fit.insert_factor(fac, Rn, Vn, update_tau=True)
    else:
        vprint(lvl, f"An update to factor {k + 1} decreased the objective by {fit.obj - fac.obj:.3e}.")
    return fit


def _extrapolate(fit: FlashFit, old: FlashFit, beta):
    new = fit.copy()
    skip = fit.is_zero
    for n in (0, 1):
        EF = fit.EF[n] + beta * (fit.EF[n] - old.EF[n])
        EF2 = fit.EF2[n] + beta * (fit.EF2[n] - old.EF2[n])
        if np.any(skip):
            EF[:, skip] = fit.EF[n][:, skip]
            EF2[:, skip] = fit.EF2[n][:, skip]
        new.EF[n] = EF
        new.EF2[n] = np.maximum(EF2, EF * EF + 1e-10)
    t, to = fit.tau.tau, old.tau.tau
    if isinstance(t, list):
        tau = [np.maximum(a + beta * (a - b), 1e-10) for a, b in zip(t, to)]
    else:
        tau = np.maximum(np.asarray(t) + beta * (np.asarray(t) - np.asarray(to)), 1e-10)
        if np.ndim(tau) == 0:
            tau = float(tau)
    new.tau = tau_with(fit.spec, fit.Z, fit.tau, tau)
    L, F = new.EF
    fitted = L @ F.T
    var = new.EF2[0] @ new.EF2[1].T - (L * L) @ (F * F).T
    new.R = fit.Y - fitted if fit.Z is None else fit.Z * (fit.Y - fitted)
    new.V = var if fit.Z is None else fit.Z * var
    return new


@single_blas_thread
def flash_backfit(fit, kset=None, extrapolate=True, warmstart=True, maxiter=500, tol=None, verbose=None):
    """Backfit the factors in ``kset`` (0-based; default all).

    Parameters
    ----------
    fit : FlashFit
    kset : sequence of int, optional
    extrapolate : bool
        Extrapolated (accelerated) sweeps (default) or sequential updates.
    warmstart : bool
        Start each EBNM solve from the previous prior (when it passes flashier's
        sanity check).
    maxiter : int
    tol : float, optional
        Default: the fit's tolerance (``flash_set_conv_crit``; initially sqrt(eps) * n * p).
    verbose : int, optional

    Returns
    -------
    FlashFit
    """
    check_fit(fit)
    maxiter = _int_arg("maxiter", maxiter)
    tol = fit.conv_tol if tol is None else float(tol)
    lvl = fit.verbose if verbose is None else int(verbose)
    fit = fit.copy()
    if is_timed_out(fit):
        report_timeout(fit, lvl, "Backfit")
        return fit
    if fit.n_factors == 0:
        vprint(lvl, "No factors have been added. Skipping backfit.")
        return fit
    kset = _valid_kset(fit, kset)
    vprint(lvl, f"Backfitting {len(kset)} factors (tolerance: {tol:.2e})...")
    print_header(lvl, fit, backfit=True)
    crit = np.full(fit.n_factors, np.inf)
    crit[[k for k in range(fit.n_factors) if k not in kset]] = 0.0
    it = 0
    beta = 0.5 / 1.2
    old_f = fit
    target = None
    while it < maxiter and np.max(crit) > tol and not is_timed_out(fit):
        it += 1
        if extrapolate:
            prop = _update_kset(_extrapolate(fit, old_f, beta), kset, warmstart)
            old_f = fit
            if prop.obj - fit.obj < tol:
                fit = _update_kset(fit.copy(), kset, warmstart)
                beta *= 0.5
            else:
                fit = prop
                beta = min(beta * 1.2, 2.0)
            vals, c = update_info(fit, fit, old_f, None)
            crit = np.array([c])
            print_entry(lvl, fit, it, vals, "all", backfit=True)
        else:
            for k in kset:
                prev = Snapshot(fit)
                fit = _update_one(fit, k, warmstart, lvl)
                vals, crit[k] = update_info(fit, fit, prev, k)
                print_entry(lvl, fit, it, vals, k + 1, backfit=True)
        mc = float(np.max(crit))
        if target is None and 0 < mc < np.inf:
            target = 10.0 ** np.floor(np.log10(mc))
        elif target is not None and mc < target:
            vprint(lvl, f"  Difference between iterations is within {target:.1e}...")
            target /= 10.0
    if it > 0 and is_timed_out(fit):
        report_timeout(fit, lvl)
    if it == maxiter:
        vprint(lvl, "  --Maximum number of iterations reached!")
        fit.flags["maxiter_reached"] = True
    fit.flags["backfit_iter"] = it
    vprint(lvl, "Wrapping up...")
    vprint(lvl, "Done.")
    return fit
