r"""Greedy addition of factors (flashier's ``flash_greedy``).

Each new rank-one term is initialised (:mod:`.init`), then its two EBNM
sub-problems are solved alternately (:func:`.update.update_factor`) with the
residual precision re-estimated after each sweep, holding the existing factors
fixed. Iteration stops when the ELBO gain is at most ``tol`` or after
``maxiter`` sweeps; an ELBO decrease reverts to the previous iterate. The
factor is kept when it is non-zero and raises the ELBO by more than ``tol``;
the first rejected factor ends the greedy loop.
"""
from __future__ import annotations

import numpy as np

from .._blas import single_blas_thread
from .._errors import MashInputError
from .._log import get_logger, say
from .fit import Factor, FlashFit
from .init import flash_greedy_init_default
from .control import is_timed_out, print_entry, print_header, report_timeout, update_info
from .update import ebnm_sign, update_factor
from .variance import tau_with

_log = get_logger(__name__)


def default_ebnm():
    """mashlib's ``ebnm_point_normal`` (imported lazily)."""
    from ..eb.ebnm import ebnm_point_normal

    return ebnm_point_normal


def handle_ebnm_fn(ebnm_fn):
    """One function or a (loadings, factors) pair -> (pair, sign constraints)."""
    if ebnm_fn is None:
        ebnm_fn = default_ebnm()
    if callable(ebnm_fn):
        fns = (ebnm_fn, ebnm_fn)
    else:
        fns = tuple(ebnm_fn)
        if len(fns) != 2 or not all(callable(f) for f in fns):
            raise MashInputError("ebnm_fn: pass one ebnm function or a pair (loadings, factors) of them, "
                                 "e.g. (ebnm_point_normal, ebnm_point_exponential).")
    signs = [ebnm_sign(fns[0])]
    signs.append(signs[0] if fns[1] is fns[0] else ebnm_sign(fns[1]))
    return fns, signs


def check_fit(fit):
    """Raise unless ``fit`` is a :class:`FlashFit`."""
    if not isinstance(fit, FlashFit):
        raise MashInputError("fit: expected a FlashFit from flash_init() or flash(); "
                             f"got {type(fit).__name__}.")


def _int_arg(name, val, lower=1):
    if isinstance(val, bool) or not isinstance(val, (int, np.integer, float)) or float(val) != int(val) \
            or int(val) < lower:
        raise MashInputError(f"{name}: must be an integer >= {lower} (got {val!r}).")
    return int(val)


def vprint(level, *args):
    """flashier's announcements: logged at INFO, shown when the verbosity ``level`` is positive."""
    say(_log, level > 0, " ".join(str(a) for a in args))


def _step(fit, fac, Rk, Vk, fns, warmstart):
    """One sweep over both modes with the factor's own precision, then tau and ELBO."""
    update_factor(fac, fac.tau.full, Rk, fns, warmstart=warmstart)
    fit.factor_tau_obj(fac, Rk, Vk)
    fac.is_valid = True
    return fac


def _extrapolate_factor(fit, fac, old, beta):
    """Proposal fac + beta (fac - old) for moments and precision (flashier's ``extrapolate.f``)."""
    prop = fac.copy()
    for n in (0, 1):
        if not fac.is_zero:
            prop.EF[n] = fac.EF[n] + beta * (fac.EF[n] - old.EF[n])
            prop.EF2[n] = fac.EF2[n] + beta * (fac.EF2[n] - old.EF2[n])
        prop.EF2[n] = np.maximum(prop.EF2[n], prop.EF[n] ** 2 + 1e-10)
    t, to = fac.tau.tau, old.tau.tau
    if isinstance(t, list):
        tau = [np.maximum(a + beta * (a - b), 1e-10) for a, b in zip(t, to)]
    else:
        tau = np.maximum(np.asarray(t) + beta * (np.asarray(t) - np.asarray(to)), 1e-10)
        tau = float(tau) if np.ndim(tau) == 0 else tau
    prop.tau = tau_with(fit.spec, fit.Z, fac.tau, tau)
    return prop


@single_blas_thread
def flash_greedy(fit, Kmax=1, ebnm_fn=None, init_fn=None, extrapolate=False, warmstart=False,
                 maxiter=500, tol=None, verbose=None):
    """Add up to ``Kmax`` factors greedily.

    Parameters
    ----------
    fit : FlashFit
    Kmax : int
        Maximum number of factors to add (>= 1).
    ebnm_fn : callable or pair of callables
        EBNM solver(s) for loadings and factors (default ``ebnm_point_normal``).
        Sign constraints (e.g. point-exponential factors) are detected as flashier
        does, by solving x = (-10, 0, 10), s = 1.
    init_fn : callable, optional
        ``init_fn(fit) -> [l, f]``; default :func:`.init.flash_greedy_init_default`
        with the detected sign constraints.
    extrapolate : bool
        Accelerate each factor's iterations by extrapolation, as
        :func:`~mashlib.ebmf.flash_backfit` does (flashier's default: False).
    warmstart : bool
        Start each EBNM solve at the previous prior.
    maxiter : int
        Maximum sweeps per factor.
    tol : float, optional
        Convergence tolerance on the ELBO (default sqrt(eps) * n * p).
    verbose : int, optional
        0 silent, 1 announcements (default: the fit's level).

    Returns
    -------
    FlashFit
    """
    check_fit(fit)
    Kmax = _int_arg("Kmax", Kmax)
    maxiter = _int_arg("maxiter", maxiter)
    tol = fit.conv_tol if tol is None else float(tol)
    lvl = fit.verbose if verbose is None else int(verbose)
    fns, signs = handle_ebnm_fn(ebnm_fn)
    if init_fn is None:
        def init_fn(f, _s=signs):
            return flash_greedy_init_default(f, sign_constraints=_s)
    fit = fit.copy()
    if is_timed_out(fit):
        report_timeout(fit, lvl, "Greedy fit")
        return fit
    added, failed = 0, False
    while added < Kmax and not failed and not is_timed_out(fit):
        vprint(lvl, f"Adding factor {fit.n_factors + 1} to flash object...")
        EF = [np.asarray(e, float).ravel() for e in init_fn(fit)]
        if EF[0].shape != (fit.dims[0],) or EF[1].shape != (fit.dims[1],):
            raise MashInputError("init_fn: must return [l, f] with len(l) = n rows and len(f) = p columns.")
        fac = Factor(EF, [EF[0] ** 2, EF[1] ** 2], fns=fns)
        Rk, Vk = fit.R, fit.V
        fit.factor_tau_obj(fac, Rk, Vk)
        it, crit = 0, np.inf
        old = fac
        beta = 0.5 / 1.2
        print_header(lvl, fit, backfit=False)
        while crit > tol and it < maxiter and not is_timed_out(fit):
            it += 1
            if fac.is_zero:
                crit = 0.0
                break
            if extrapolate:
                prop = _step(fit, _extrapolate_factor(fit, fac, old, beta), Rk, Vk, fns, warmstart)
            old = fac
            if not extrapolate:
                fac = _step(fit, fac.copy(), Rk, Vk, fns, warmstart)
            elif prop.obj - fac.obj < tol:
                fac = _step(fit, fac.copy(), Rk, Vk, fns, warmstart)
                beta *= 0.5
            else:
                fac = prop
                beta = min(beta * 1.2, 2.0)
            diff = fac.obj - old.obj
            if old.is_valid and diff < 0:
                fac = old
                break
            vals, crit = update_info(fit, fac, old, None)
            print_entry(lvl, fit, it, vals, fit.n_factors + 1, backfit=False)
        if is_timed_out(fit):
            report_timeout(fit, lvl)
        if it == maxiter:
            vprint(lvl, "  --Maximum number of iterations reached!")
        valid = bool(np.all(fit.is_valid)) and fac.is_valid
        if not fac.is_zero and (fac.obj > fit.obj + tol or not valid):
            Rn, Vn = fit.candidate(fac, Rk, Vk)
            fit.add_factor(fac, Rn, Vn)
            added += 1
        else:
            failed = True
            vprint(lvl, "Factor doesn't significantly increase objective and won't be added.")
    fit.flags["greedy_fail"] = failed
    vprint(lvl, "Wrapping up...")
    vprint(lvl, "Done.")
    return fit
