"""The EM loop of udr's ``ud_fit`` (udr 0.3-158 ``R/ud_fit.R``, ``R/update_prior_covariances.R``).

See :mod:`mashlib.prior.udr` for the model, the control settings and the documented departures
from udr.
"""
from __future__ import annotations

import time
import warnings
from typing import Optional

import numpy as np
import pandas as pd

from ..._blas import single_blas_thread
from ..._errors import MashInputError
from ..._log import get_logger, say
from . import updates as up
from .model import UdComponent, UdFit, _loglik_and_P, ud_fit_control_default

_log = get_logger(__name__)

_ALLOWED = {
    "weights_update": ("em", "none"),
    "resid_update": ("em", "none"),
    "scaled_update": ("fa", "em", "none"),
    "rank1_update": ("ted", "fa", "none"),
    "unconstrained_update": ("ted", "ed", "fa", "none"),
    "penalty_type": ("iw", "nu"),
    "scaled_iid": ("rescale", "udr"),
    "version": ("R", "Rcpp"),
}


def _resolve_control(fit: UdFit, control: Optional[dict]) -> dict:
    """Merge with the defaults, accept R's dotted names, fill the NA updates as udr."""
    ctl = ud_fit_control_default()
    user = {}
    for key, val in (control or {}).items():
        k = "lambda_" if key in ("lambda", "lambda_") else key.replace(".", "_")
        if k not in ctl:
            raise MashInputError(f"ud_fit: unknown control setting {key!r}; allowed: "
                                 f"{sorted(ctl)}")
        user[k] = val
    ctl.update(user)
    types = [c.covtype for c in fit.U.values()]
    iid = fit.iid
    k = len(types)
    if ctl["weights_update"] is None:
        ctl["weights_update"] = "none" if k == 1 else "em"
    if ctl["resid_update"] is None:
        ctl["resid_update"] = "none"
    defaults = {"scaled": "fa" if iid else "none", "rank1": "ted" if iid else "fa",
                "unconstrained": "ted" if iid else "none"}
    for t in ("scaled", "rank1", "unconstrained"):
        key = f"{t}_update"
        if ctl[key] is None:
            ctl[key] = defaults[t] if t in types else "none"
        elif ctl[key] != "none" and t not in types:
            ctl[key] = "none"                       # udr: message "... is ignored"
    for key, allowed in _ALLOWED.items():
        if ctl[key] not in allowed:
            hint = " ('ed' is valid for unconstrained components only)" if ctl[key] == "ed" else ""
            raise MashInputError(f"ud_fit: control[{key!r}] = {ctl[key]!r}; allowed: "
                                 f"{list(allowed)}{hint}")
    if not iid:
        if ctl["resid_update"] != "none":
            raise MashInputError("ud_fit: the residual covariance V can only be updated when it "
                                 "is the same for all rows (iid); use resid_update='none'")
        if ctl["unconstrained_update"] == "ted" or ctl["rank1_update"] == "ted":
            raise MashInputError("ud_fit: the 'ted' update does not work when rows are not "
                                 "i.i.d. (different V_i, e.g. EE data with varying Shat); use "
                                 "unconstrained_update='ed', or EZ data (alpha=1)")
        if ctl["unconstrained_update"] == "fa":
            raise MashInputError("ud_fit: unconstrained_update='fa' is not implemented for "
                                 "non-i.i.d. rows (udr neither); use 'ed'")
    lam = float(ctl["lambda_"])
    if lam < 0:
        raise MashInputError(f"ud_fit: lambda_ = {lam} must be >= 0")
    if lam != 0 and "unconstrained" in types:
        uu = ctl["unconstrained_update"]
        if uu not in ("ed", "ted"):
            raise MashInputError(f"ud_fit: a penalty (lambda_ = {lam}) needs "
                                 f"unconstrained_update 'ed' or 'ted', not {uu!r}")
        if uu == "ed" and ctl["penalty_type"] == "nu":
            raise MashInputError("ud_fit: penalty_type='nu' is not available with the 'ed' "
                                 "update (udr silently uses the inverse-Wishart penalty); use "
                                 "penalty_type='iw' or unconstrained_update='ted'")
        if uu == "ted" and ctl["S0"] is not None:
            raise MashInputError("ud_fit: S0 is only used by the 'ed' update; the 'ted' penalty "
                                 "assumes S0 = I")
    m = fit.X.shape[1]
    S0 = np.eye(m) if ctl["S0"] is None else np.asarray(ctl["S0"], dtype=float)
    if S0.shape != (m, m):
        raise MashInputError(f"ud_fit: S0 should be {m} x {m}")
    ctl["S0_mat"] = S0
    if "tol" in user and not ctl["use_tol"]:
        warnings.warn("ud_fit: control['tol'] is not part of udr's stopping rule (only tol_lik "
                      "is); set control['use_tol']=True to also stop when the largest "
                      "parameter change is below tol")
    ctl["maxiter"] = int(ctl["maxiter"])
    return ctl


def _update_iid(X, U, P, ctl, upd):
    """One update of component U (transformed space, x ~ N(0, U + I))."""
    t, how = U.covtype, upd[U.covtype]
    p = P
    if how == "none":
        return U
    lam, minval = float(ctl["lambda_"]), ctl["minval"]
    if t == "unconstrained":
        if how == "ed":
            mat, s = up.ed_reg_iid(X, U.mat, p, lam, U.s, ctl["S0_mat"])
            return UdComponent("unconstrained", mat, s)
        if how == "ted":
            if lam == 0:
                return UdComponent("unconstrained", up.ted(X, p, minval), 1.0)
            mat, s = up.ted_penalized(X, p, lam, U.s, ctl["penalty_type"])
            return UdComponent("unconstrained", mat, s)
        return UdComponent("unconstrained", up.fa_unconstrained(X, U.mat, p), U.s)
    if t == "scaled":
        if how == "fa":
            s = up.fa_scaled_iid(X, U.U0, U.Q, p, U.s)
        else:
            s = up.em_scaled_iid(X, U.U0, p, 0.0)
        return UdComponent("scaled", s * U.U0, s, U.U0, U.Q)
    if how == "ted":
        v = up.getrank1(up.ted(X, p, minval, r=1))
    else:
        v = up.fa_rank1_iid(X, U.vec, p)
    return UdComponent("rank1", np.outer(v, v), vec=v)


def _update_notiid(X, V, U, p, ctl, upd):
    t, how = U.covtype, upd[U.covtype]
    if how == "none":
        return U
    if t == "unconstrained":                       # 'ed' (others rejected in control)
        mat, s = up.ed_notiid(X, U.mat, V, p, float(ctl["lambda_"]), U.s, ctl["S0_mat"])
        return UdComponent("unconstrained", 0.5 * (mat + mat.T), s)
    if t == "scaled":
        if how == "fa":
            s = up.fa_scaled_notiid(X, U.U0, V, U.Q, p, U.s, ctl.get("_Vinv"))
        else:
            s = up.em_scaled_notiid(X, U.U0, V, p)
        return UdComponent("scaled", s * U.U0, s, U.U0, U.Q)
    v = up.fa_rank1_notiid(X, U.vec, V, p, ctl.get("_Vinv"))
    return UdComponent("rank1", np.outer(v, v), vec=v)


def _update_resid(X, U, V, P):
    """EM update of the common residual covariance V (udr ``update_resid_covariance``)."""
    n, m = X.shape
    Vinv = np.linalg.inv(V)
    Vnew = np.zeros((m, m))
    mu1 = np.zeros((n, m))
    for k, c in enumerate(U.values()):
        S1 = np.linalg.solve(c.mat @ Vinv + np.eye(m), c.mat)     # (U V^-1 + I)^-1 U
        Mk = X @ (S1 @ Vinv).T                                    # mu1_ik
        pk = P[:, k]
        Vnew += pk.sum() * S1 + (Mk * pk[:, None]).T @ Mk
        mu1 += pk[:, None] * Mk
    Vnew += -mu1.T @ mu1 + (X - mu1).T @ (X - mu1)
    Vnew /= n
    return 0.5 * (Vnew + Vnew.T)


def _prior_updates(fit: UdFit, P, ctl, upd):
    """udr ``update_prior_covariances``: returns (new U dict, log-penalty)."""
    names = list(fit.U)
    thr = ctl["update_threshold"]
    colsum = P.sum(axis=0)
    lam = float(ctl["lambda_"])
    newU = {}
    logplt = 0.0
    if fit.iid:
        Rc = np.linalg.cholesky(fit.V).T                       # V = R^T R
        Rinv = np.linalg.inv(Rc)
        Xp = fit.X @ Rinv
        for j, nm in enumerate(names):
            c = fit.U[nm]
            cp = c.transformed(Rinv)
            if colsum[j] > thr:
                cp = _update_iid(Xp, cp, P[:, j], ctl, upd)
            if lam != 0 and c.covtype == "unconstrained":
                logplt += up.compute_penalty(cp.mat, cp.s, lam, ctl["unconstrained_update"],
                                             ctl["penalty_type"], ctl["S0_mat"])
            back = cp.transformed(Rc)
            if c.covtype == "scaled":
                nc = c.copy()
                nc.s = back.s
                if ctl["scaled_iid"] == "rescale":
                    nc.mat = nc.s * nc.U0
                newU[nm] = nc
            else:
                back.mat = 0.5 * (back.mat + back.mat.T)
                newU[nm] = back
    else:
        for j, nm in enumerate(names):
            c = fit.U[nm]
            nc = _update_notiid(fit.X, fit.V, c, P[:, j], ctl, upd) if colsum[j] > thr else c
            if lam != 0 and c.covtype == "unconstrained":
                logplt += up.compute_penalty(nc.mat, nc.s, lam, "ed", "iw", ctl["S0_mat"])
            newU[nm] = nc
    return newU, logplt


@single_blas_thread
def ud_fit(fit: UdFit, X=None, control: Optional[dict] = None, verbose: bool = False) -> UdFit:
    """Fit the ultimate-deconvolution model by EM (udr ``ud_fit``).

    Parameters
    ----------
    fit : UdFit
        From :func:`ud_init` or a previous ``ud_fit`` (then the loop continues from it).
    X : array (n, m), optional
        Replace the data matrix.
    control : dict, optional
        Overrides of :func:`ud_fit_control_default` (R's dotted names such as
        ``"unconstrained.update"`` and ``"lambda"`` are accepted):

        ``unconstrained_update`` ("ed", "ted", "fa", "none"; default "ted" iid / "none"),
        ``scaled_update`` ("fa", "em", "none"; default "fa" iid / "none"),
        ``rank1_update`` ("ted", "fa", "none"; default "ted" iid / "fa"),
        ``resid_update`` ("em", "none"), ``weights_update`` ("em", "none"),
        ``lambda_`` (penalty strength, 0), ``penalty_type`` ("iw", "nu"), ``S0`` (IW scale,
        default I), ``maxiter`` (20), ``tol_lik`` (1e-3), ``minval`` (1e-8),
        ``update_threshold`` (1e-3), ``scaled_iid`` ("rescale" or "udr", see module notes),
        ``tol`` with ``use_tol``.
    verbose : bool
        Print one line per iteration.

    Returns
    -------
    UdFit
        Updated fit; ``progress`` holds the per-iteration log-likelihood trace.
    """
    if not isinstance(fit, UdFit):
        raise MashInputError("ud_fit: fit should be a UdFit from ud_init or ud_fit")
    fit = UdFit(X=fit.X, V=fit.V, U={k: c.copy() for k, c in fit.U.items()}, w=fit.w.copy(),
                loglik=fit.loglik, loglik_penalized=fit.loglik_penalized, logplt=fit.logplt,
                progress=fit.progress.copy(), P=fit.P)
    if X is not None:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 2:
            raise MashInputError("ud_fit: X should be a numeric matrix with at least 2 rows "
                                 "and 2 columns")
        fit.X = X
    ctl = _resolve_control(fit, control)
    if not fit.iid and (ctl["scaled_update"] == "fa" or ctl["rank1_update"] == "fa"):
        ctl["_Vinv"] = up.inv_rows(fit.V)                # V_i are fixed: invert once
    upd = {"scaled": ctl["scaled_update"], "rank1": ctl["rank1_update"],
           "unconstrained": ctl["unconstrained_update"]}
    n, m = fit.X.shape
    say(_log, verbose, f"Performing Ultimate Deconvolution on {n} x {m} matrix (mashlib port of udr "
        f"0.3-158): data points are {'i.i.d. (same V)' if fit.iid else 'not i.i.d.'}")
    say(_log, verbose, f"prior covariance updates: scaled ({upd['scaled']}), rank-1 ({upd['rank1']}), "
        f"unconstrained ({upd['unconstrained']}); lambda={ctl['lambda_']} "
        f"({ctl['penalty_type']}); max {ctl['maxiter']} updates, tol_lik={ctl['tol_lik']}")
    rows = []
    it = 0
    P_next = None
    for it in range(1, ctl["maxiter"] + 1):
        t1 = time.perf_counter()
        V0, U0, w0 = fit.V, _mats(fit.U), fit.w
        if P_next is None:                                               # E step
            _, P_next = _loglik_and_P(fit.X, fit.w, fit.U, fit.V)
        P = P_next
        if fit.iid and ctl["resid_update"] == "em":
            fit.V = _update_resid(fit.X, fit.U, fit.V, P)
        fit.U, fit.logplt = _prior_updates(fit, P, ctl, upd)
        if ctl["weights_update"] == "em":
            fit.w = P.sum(axis=0) / P.shape[0]
        # the responsibilities at the new parameters are the next iteration's E step
        loglik, P_next = _loglik_and_P(fit.X, fit.w, fit.U, fit.V)
        fit.P = P
        pen = loglik + fit.logplt
        dw = float(np.max(np.abs(fit.w - w0)))
        dU = float(np.max(np.abs(_mats(fit.U) - U0)))
        dV = float(np.max(np.abs(fit.V - V0))) if fit.iid else 0.0
        rows.append((it, loglik, pen, dw, dV, dU, time.perf_counter() - t1))
        if verbose:
            say(_log, verbose, f"{it:4d} {loglik:+0.16e} {pen:+0.16e} {dw:0.2e} {dU:0.2e} {dV:0.2e}")
        diff = pen - fit.loglik_penalized
        fit.loglik_penalized, fit.loglik = pen, loglik
        if diff < ctl["tol_lik"]:
            break
        if ctl["use_tol"] and max(dw, dU, dV) < ctl["tol"]:
            break
    prog = pd.DataFrame(rows, columns=["iter", "loglik", "loglik_pen", "delta_w", "delta_v",
                                       "delta_u", "timing"])
    fit.progress = prog if len(fit.progress) == 0 else pd.concat([fit.progress, prog],
                                                                  ignore_index=True)
    fit.niter = it
    fit.control = {k: v for k, v in ctl.items() if k not in ("S0_mat", "_Vinv")}
    return fit


def _mats(U):
    return np.stack([c.mat for c in U.values()])
