"""ashr's mixture-proportion optimisers: ``mixSQP`` wrapper and SQUAREM-accelerated ``mixEM``.

Both maximise the Dirichlet-penalised log-likelihood (map §2.3)

.. math::

    \\ell(\\pi) = \\sum_i w_i \\log \\sum_k \\pi_k L_{ik}
                  + \\sum_{k:\\,\\lambda_k \\ne 1} (\\lambda_k - 1) \\log \\pi_k,
    \\qquad \\pi \\in \\Delta_K,

where :math:`\\lambda` is the ``prior`` (e.g. "nullbiased": :math:`\\lambda_1` = nullweight,
1 elsewhere).

* :func:`mix_sqp` folds the penalty into the data: since
  :math:`(\\lambda_k - 1)\\log \\pi_k = (\\lambda_k - 1)\\log(e_k^T\\pi)`, it appends the rows
  of :math:`I_K` with weights :math:`\\lambda - 1` to ``matrix_lik`` (rows of weight 0
  dropped) and calls :func:`mashlib.mixsqp` with ``eps=1e-6, numiter_em=20``
  (the identity rows are written straight into mixsqp's private normalised copy of L).
* :func:`mix_em` iterates the EM fixed point
  :math:`\\pi_k \\leftarrow (\\sum_i \\gamma_{ik} + \\lambda_k - 1) / \\sum_l(\\cdot)`,
  :math:`\\gamma_{ik} \\propto \\pi_k L_{ik}`, accelerated by SQUAREM ``squarem1``
  (Varadhan & Roland 2008, method 3, map §2.10).
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError
from ._mixsqp import STATUS_CONVERGED, _mixsqp, mixsqp  # noqa: F401

__all__ = ["mix_sqp", "mix_em", "penloglik", "squarem", "MixEMResult"]


def _check(matrix_lik, prior, pi_init, fn):
    L = np.asarray(matrix_lik, dtype=float)
    if L.ndim != 2:
        raise MashInputError(f"{fn}: argument 'matrix_lik' must be a 2-d matrix, got "
                             f"shape {L.shape}.")
    k = L.shape[1]
    prior = np.broadcast_to(np.asarray(prior, dtype=float), (k,)).copy() \
        if np.ndim(prior) == 0 else np.asarray(prior, dtype=float).ravel()
    if prior.shape[0] != k:
        raise MashInputError(f"{fn}: argument 'prior' has length {prior.shape[0]} but "
                             f"matrix_lik has {k} columns; give one prior weight per column.")
    if pi_init is not None:
        pi_init = np.asarray(pi_init, dtype=float).ravel()
        if pi_init.shape[0] != k:
            raise MashInputError(f"{fn}: argument 'pi_init' has length {pi_init.shape[0]}, "
                                 f"expected {k} (one per column of matrix_lik).")
    return L, prior, pi_init


def mix_sqp(matrix_lik, prior, pi_init=None, control=None, weights=None, log=False):
    """ashr ``mixSQP``: penalised mixture proportions by mix-SQP.

    Parameters
    ----------
    matrix_lik : array_like (n, K)
        Component likelihoods (any positive row scaling), or their logarithms with
        ``log=True`` (then exponentiated row by row straight into mixsqp's private copy,
        after subtracting each row's maximum: no n x K likelihood matrix is formed).
    prior : array_like (K,)
        Dirichlet penalty :math:`\\lambda_k \\ge 1` (scalar recycled).
    pi_init : array_like (K,), optional
        Initial value (default all ones; normalised by mixsqp).
    control : dict, optional
        mixsqp control overrides on top of ``{'verbose': False, 'eps': 1e-6,
        'numiter_em': 20}``.
    weights : array_like (n,), optional
        Row weights (default 1).
    log : bool
        ``matrix_lik`` holds log-likelihoods (same weights as with ``exp(matrix_lik)``).

    Returns
    -------
    pihat : ndarray (K,)
        :math:`x / \\sum x`.
    converged : bool
        mixsqp status == "converged to optimal solution".
    """
    L, prior, pi_init = _check(matrix_lik, prior, pi_init, "mix_sqp")
    n, k = L.shape
    if weights is None:
        weights = np.ones(n)
    weights = np.asarray(weights, dtype=float).ravel()
    if weights.shape[0] != n:
        raise MashInputError(f"mix_sqp: argument 'weights' has length {weights.shape[0]}, "
                             f"expected {n} (one per row of matrix_lik).")
    if np.any(prior < 1) or not np.all(np.isfinite(prior)):
        j = int(np.flatnonzero(~(prior >= 1))[0])
        raise MashInputError(f"mix_sqp: argument 'prior' has entry {j} = {prior[j]}; mixSQP "
                             "needs finite Dirichlet weights >= 1 (use 'nullbiased' or "
                             "'uniform').")
    if pi_init is None:
        pi_init = np.ones(k)
    # the penalty rows e_k (weight prior_k - 1, zero weights dropped) go first, as ashr's
    # rbind(diag(k), matrix_lik); mixsqp adds them to its private copy of L, no stacking here
    pcols = np.flatnonzero(prior != 1.0)
    keep = weights != 0
    if not keep.all():
        L, weights = L[keep], weights[keep]
    ctrl = {"verbose": False, "eps": 1e-6, "numiter_em": 20}
    if control:
        ctrl.update({str(a).replace(".", "_"): b for a, b in control.items()})
    res = _mixsqp(L, weights, pi_init, bool(log), ctrl, prior=(pcols, prior[pcols] - 1.0),
                  hessian=False)
    x = res.x / res.x.sum()
    return x, res.status == STATUS_CONVERGED


def penloglik(pi, matrix_lik, prior):
    """Penalised log-likelihood (ashr ``penloglik``) at ``normalize(pmax(0, pi))``."""
    pi = np.maximum(0.0, np.asarray(pi, dtype=float))
    pi = pi / pi.sum()
    L = np.asarray(matrix_lik, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = np.sum(np.log(L @ pi))
        sub = prior != 1.0
        pen = np.sum((prior[sub] - 1.0) * np.log(pi[sub]))
    return float(loglik + pen)


def _em_fixpoint(pi, L, prior):
    pi = np.maximum(0.0, pi)
    pi = pi / pi.sum()
    m = L * pi
    m = m / m.sum(axis=1, keepdims=True)
    new = m.sum(axis=0) + prior - 1.0
    return new / new.sum()


class MixEMResult(tuple):
    """``(pihat, converged)`` tuple with extra attributes ``B`` (objective), ``niter``."""

    def __new__(cls, pihat, converged, B, niter):
        obj = super().__new__(cls, (pihat, converged))
        obj.pihat, obj.converged, obj.B, obj.niter = pihat, converged, B, niter
        return obj


def squarem(par, fixptfn, objfn, control=None):
    """SQUAREM ``squarem1`` (K=1, ``square=TRUE``), map §2.10.

    Each cycle: :math:`p_1 = F(p), q_1 = p_1 - p`; :math:`p_2 = F(p_1), q_2 = p_2 - p_1`;
    :math:`r = q_1`, :math:`v = q_2 - q_1`, step (method 3)
    :math:`\\alpha = \\sqrt{r^Tr / v^Tv}` clamped to [step_min, step_max];
    :math:`p_{new} = p + 2\\alpha r + \\alpha^2 v` (followed by one F when
    :math:`|\\alpha-1| > 0.01`); fall back to :math:`p_2` when the objective is not finite
    or rises by more than ``objfn_inc``. Stops when :math:`\\|q\\|_2 <` tol or after
    ``maxiter`` evaluations of F. On a tolerance stop the latest fixed-point image
    (:math:`p_1`, or :math:`p_2` at the second test) is returned: this reproduces R's
    ashr ``mixEM`` output to 1e-15 on the golden cases, where returning p did not (the
    test ``test_ashr_mixem_nullbiased``).

    Returns
    -------
    dict with par, value_objfn, iter, fpevals, objfevals, convergence.
    """
    c = dict(K=1, method=3, square=True, step_min0=1.0, step_max0=1.0, mstep=4.0, kr=1.0,
             objfn_inc=1.0, tol=1e-7, maxiter=1500, trace=False)
    if control:
        for a, b in control.items():
            c[str(a).replace(".", "_")] = b
    method, tol, maxiter = int(c["method"]), float(c["tol"]), int(c["maxiter"])
    step_min, step_max0, mstep = float(c["step_min0"]), float(c["step_max0"]), float(c["mstep"])
    step_max, objfn_inc = step_max0, float(c["objfn_inc"])
    p = np.asarray(par, dtype=float).copy()
    lold = objfn(p)
    leval, feval, it, conv = 1, 0, 1, True
    while feval < maxiter:
        p1 = fixptfn(p)
        feval += 1
        if np.isnan(p1).any():
            break
        q1 = p1 - p
        sr2 = float(q1 @ q1)
        if np.sqrt(sr2) < tol:
            p = p1
            break
        p2 = fixptfn(p1)
        feval += 1
        if np.isnan(p2).any():
            break
        q2 = p2 - p1
        if np.sqrt(float(q2 @ q2)) < tol:
            p = p2
            break
        v = q2 - q1
        sv2 = np.float64(v @ v)
        srv = np.float64(q1 @ v)
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == 1:
                alpha = -srv / sv2
            elif method == 2:
                alpha = -np.float64(sr2) / srv
            else:
                alpha = np.sqrt(np.float64(sr2) / sv2)
        alpha = max(step_min, min(step_max, alpha))
        pnew = p + 2 * alpha * q1 + alpha ** 2 * v
        if abs(alpha - 1) > 0.01:
            pnew = fixptfn(pnew)
            feval += 1
        if np.isnan(pnew).any():
            reject = True
        elif np.isfinite(objfn_inc):
            lnew = objfn(pnew)
            leval += 1
            reject = np.isnan(lnew) or lnew > lold + objfn_inc
        else:
            lnew = lold
            reject = False
        if reject:  # fall back to the plain fixed-point step p2
            pnew = p2
            lnew = objfn(p2)
            leval += 1
            if alpha == step_max:
                step_max = max(step_max0, step_max / mstep)
            alpha = 1.0
        if alpha == step_max:
            step_max = mstep * step_max
        if step_min < 0 and alpha == step_min:
            step_min = mstep * step_min
        p = pnew
        if not np.isnan(lnew):
            lold = lnew
        it += 1
    if feval >= maxiter:
        conv = False
    if not np.isfinite(objfn_inc):
        lold = objfn(p)
        leval += 1
    return dict(par=p, value_objfn=lold, iter=it, fpevals=feval, objfevals=leval,
                convergence=conv)


def mix_em(matrix_lik, prior, pi_init=None, control=None):
    """ashr ``mixEM``: penalised mixture proportions by SQUAREM-accelerated EM.

    Parameters
    ----------
    matrix_lik : array_like (n, K)
    prior : array_like (K,)
    pi_init : array_like (K,), optional
        Default uniform 1/K.
    control : dict, optional
        SQUAREM settings overriding ashr's ``set_control_squarem`` defaults: K=1,
        method=3, square=True, step.min0=1, step.max0=1, mstep=4, kr=1, objfn.inc=1,
        ``tol=min(0.1/n, 1e-7)``, ``maxiter=5000`` (dotted or snake_case keys).

    Returns
    -------
    MixEMResult
        Tuple ``(pihat, converged)`` where pihat = normalize(pmax(0, par)); also has
        ``.B`` (minimised negative penalised log-likelihood) and ``.niter`` (F evaluations).
    """
    L, prior, pi_init = _check(matrix_lik, prior, pi_init, "mix_em")
    n, k = L.shape
    if pi_init is None:
        pi_init = np.full(k, 1.0 / k)
    ctrl = dict(K=1, method=3, square=True, step_min0=1, step_max0=1, mstep=4, kr=1,
                objfn_inc=1, tol=min(0.1 / n, 1e-7), maxiter=5000, trace=False)
    if control:
        ctrl.update({str(a).replace(".", "_"): b for a, b in control.items()})
    res = squarem(pi_init, lambda p: _em_fixpoint(p, L, prior),
                  lambda p: -penloglik(p, L, prior), ctrl)
    pihat = np.maximum(0.0, res["par"])
    pihat = pihat / pihat.sum()
    return MixEMResult(pihat, bool(res["convergence"]), res["value_objfn"], res["fpevals"])
