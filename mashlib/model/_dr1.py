r"""Closed forms for "diagonal plus rank one" covariance bases under diagonal errors.

mashr's canonical bases are all of the form :math:`B = \mathrm{diag}(\delta) + \zeta\zeta^T`
(``identity``: :math:`\delta = 1, \zeta = 0`; ``simple_het_k`` with correlation :math:`\rho`:
:math:`\delta = 1-\rho`, :math:`\zeta = \sqrt\rho\,\mathbf 1`; diagonal bases).  When the errors
are diagonal, :math:`\Sigma_j = \mathrm{diag}(\sigma_j^2)` (a common V equal to the identity,
the default of ``mash_set_data``), the whitened base is again diagonal plus rank one,

.. math::

    \Sigma_j^{-1/2} B \Sigma_j^{-1/2} = \mathrm{diag}(\tilde\delta) + \tilde\zeta\tilde\zeta^T,
    \quad \tilde\delta = \delta/\sigma_j^2, \ \tilde\zeta = \zeta/\sigma_j,

so for a scale c, with :math:`m = 1 + c\tilde\delta`, :math:`t = \tilde\zeta/m`,
:math:`\kappa = 1 + c\,\tilde\zeta^Tt` and :math:`\tilde b = b/\sigma_j` (determinant lemma
and Sherman-Morrison; no eigendecomposition per (row, base)):

.. math::

    \log|\Sigma_j + cB| &= \log|\Sigma_j| + \textstyle\sum_r \log m_r + \log\kappa, \\
    b^T(\Sigma_j + cB)^{-1}b &= \textstyle\sum_r \tilde b_r^2/m_r - c(\tilde b^Tt)^2/\kappa.

Posterior (whitened coordinates, :math:`\tilde U = c(\mathrm{diag}\tilde\delta +
\tilde\zeta\tilde\zeta^T)`, :math:`\tilde U_1 = \tilde U(I+\tilde U)^{-1} = I - (I+\tilde U)^{-1}`):

.. math::

    \tilde\mu_1 = \tilde b \circ \frac{c\tilde\delta}{m} + \frac{c\,(t^T\tilde b)}{\kappa}t,
    \qquad \tilde U_1 = \mathrm{diag}\Big(\frac{c\tilde\delta}{m}\Big) + \frac{c}{\kappa}tt^T,

then :math:`\mu_1 = \sigma\circ\tilde\mu_1`, :math:`U_1 = \mathrm{diag}(\sigma)\tilde U_1
\mathrm{diag}(\sigma)` (no cancellation: :math:`1 - 1/m` is written :math:`c\tilde\delta/m`;
a zero row of B gives exactly zero mean and variance, as the spectral path).  Everything is
O(R) per (row, component) instead of an O(R^3) eigendecomposition per (row, base).

Correlated errors with a constant diagonal.  With a common correlation :math:`V \ne I`,
:math:`\Sigma_j = D_jVD_j = L_jL_j^T`, :math:`L_j = D_jL_V`, and a base whose diagonal part
is constant, :math:`B = \delta I + \zeta\zeta^T` (``identity``, ``simple_het_k``, and the
``ED_`` refinements of rank-one components, :math:`V_k + n^{-1/2}I`), the whitened base is

.. math::

    L_j^{-1}BL_j^{-T} = \delta A_j + \tilde\zeta\tilde\zeta^T, \qquad
    A_j = L_V^{-1}D_j^{-2}L_V^{-T} = P_j\Lambda_jP_j^T, \quad \tilde\zeta = L_j^{-1}\zeta,

and :math:`A_j` is the same for every such base.  One eigendecomposition per row (not per
(row, base)) turns it into a diagonal plus rank one in the coordinates :math:`P_j`:
:math:`\tilde\delta = \delta\lambda_j`, rank-one vector :math:`P_j^T\tilde\zeta` and data
:math:`P_j^T\tilde b_j`; the formulas above then give the log-likelihood
(:func:`dr1_loglik_correlated`; exact algebra, the posterior keeps the spectral path).
"""
from __future__ import annotations

import numpy as np

__all__ = ["dr1_structure", "dr1_loglik", "dr1_loglik_correlated", "dr1_rotation",
           "dr1_posterior"]

_TOL = 1e-12
LOG_2PI = float(np.log(2 * np.pi))


def dr1_structure(B: np.ndarray, tol: float = _TOL):
    r"""``(delta, zeta)`` with :math:`B = \mathrm{diag}(\delta) + \zeta\zeta^T`, :math:`\delta
    \ge 0`, to ``tol`` relative (max-abs), else None."""
    B = 0.5 * (np.asarray(B, float) + np.asarray(B, float).T)
    R = B.shape[0]
    top = np.abs(B).max()
    if R < 2 or top == 0:
        return None
    O = B - np.diag(np.diag(B))
    zeta = np.zeros(R)
    if np.abs(O).max() > tol * top:
        iu = np.triu_indices(R, 1)
        k = int(np.argmax(np.abs(O[iu])))
        b, c = int(iu[0][k]), int(iu[1][k])
        if R == 2:
            zb2 = abs(O[b, c])
        else:
            others = np.array([a for a in range(R) if a not in (b, c)])
            prod = O[others, b] * O[others, c]
            a = int(others[np.argmax(np.abs(prod))])
            if O[a, c] == 0:
                return None
            zb2 = O[a, b] * O[b, c] / O[a, c]
        if not zb2 > 0:
            return None
        zeta[b] = np.sqrt(zb2)
        rest = np.arange(R) != b
        zeta[rest] = O[rest, b] / zeta[b]
    delta = np.diag(B) - zeta * zeta
    if delta.min() < -tol * top:
        return None
    delta = np.maximum(delta, 0.0)
    if np.abs(np.diag(delta) + np.outer(zeta, zeta) - B).max() > tol * top:
        return None
    return delta, zeta


def _whitened(W, delta, zeta):
    """(c|1, k, R) whitened diagonal and rank-one vectors of k bases."""
    Sinv = W["Sinv"]                                         # (c|1, R)
    return delta[None] * (Sinv * Sinv)[:, None, :], zeta[None] * Sinv[:, None, :]


def dr1_loglik(W, scale, base_pos, delta, zeta):
    """log N(b; 0, Sigma + c B) for components ``scale`` (Pg,) of bases ``base_pos`` (Pg,).

    ``delta``/``zeta`` (Kg, R) describe the group's bases; ``W`` is the whitening of a row chunk
    with a common identity V (``Sinv``, ``Bt = b / sigma``, ``logdet``, ``bb``).  Returns
    (c, Pg); never a Cholesky failure (every base is PSD).
    """
    Dt, Zt = _whitened(W, delta, zeta)
    return _loglik(W["Bt"], Dt, Zt, W["logdet"], scale, base_pos, zeta.any(axis=1))


def dr1_rotation(W):
    """Per-row eigendecomposition :math:`A_j = L_V^{-1}D_j^{-2}L_V^{-T} = P_j\\Lambda_jP_j^T` of a
    chunk with a common correlation V (``Sinv`` (c|1, R), ``LVinv``): ``(lam, P)``."""
    Li = W["LVinv"]
    A = (Li[None] * (W["Sinv"] ** 2)[:, None, :]) @ Li.T               # (c|1, R, R)
    lam, P = np.linalg.eigh(0.5 * (A + np.swapaxes(A, 1, 2)))
    return np.maximum(lam, 0.0), P


def dr1_loglik_correlated(W, rot, scale, base_pos, delta0, zeta):
    """As :func:`dr1_loglik` for bases :math:`\\delta_kI + \\zeta_k\\zeta_k^T` (``delta0`` (Kg,),
    ``zeta`` (Kg, R)) under :math:`\\Sigma_j = D_jVD_j` with a common V (``W`` from
    :func:`mashlib.model.likelihood.whiten_rows`: ``Sinv``, ``LVinv``, ``Bt``, ``logdet``) and
    ``rot`` = :func:`dr1_rotation` of the same chunk."""
    lam, P = rot
    Bt = W["Bt"]
    Bp = Bt @ P[0] if P.shape[0] == 1 else np.einsum("jra,jr->ja", P, Bt)     # P_j^T b~_j
    Zw = (zeta[None] * W["Sinv"][:, None, :]) @ W["LVinv"].T                    # L_j^-1 zeta
    Zp = Zw @ P                                                                 # rotated
    Dt = delta0[None, :, None] * lam[:, None, :]
    return _loglik(Bp, Dt, Zp, W["logdet"], scale, base_pos, zeta.any(axis=1))


def _loglik(Bt, Dt, Zt, logdet, scale, base_pos, rank1):
    """The closed form for whitened data Bt (c, R), diagonals Dt and rank-one vectors Zt
    ((c|1), Kg, R); ``rank1`` (Kg,) marks bases with a non-zero rank-one part."""
    c, R = Bt.shape
    out = np.empty((c, scale.size))
    const = -0.5 * R * LOG_2PI - 0.5 * logdet
    B2 = Bt * Bt
    for k in np.unique(base_pos):                         # loop over bases, not rows
        sel = np.flatnonzero(base_pos == k)
        cs = scale[sel][None, :, None]                       # (1, L, 1)
        m = 1.0 + cs * Dt[:, k, None, :]                     # (c|1, L, R)
        ld = np.log(m).sum(axis=2)
        quad = np.einsum("jr,jlr->jl", B2, 1.0 / m) if m.shape[0] > 1 else B2 @ (1.0 / m[0]).T
        if rank1[k]:
            t = Zt[:, k, None, :] / m                        # (c|1, L, R)
            kap = 1.0 + cs[..., 0] * (Zt[:, k, None, :] * t).sum(axis=2)
            bt = np.einsum("jr,jlr->jl", Bt, t) if t.shape[0] > 1 else Bt @ t[0].T
            ld = ld + np.log(kap)
            quad = quad - cs[..., 0] * bt * bt / kap
        out[:, sel] = const[:, None] - 0.5 * ld - 0.5 * quad
    return out


def dr1_posterior(W, sa, scale, base_pos, delta, zeta, A=None, want_cov=False, weights=None):
    """Posterior means and variances (Bhat scale, through A) of components of one group.

    Parameters
    ----------
    W : dict
        Whitening of the chunk (common identity V): ``Sinv`` (c|1, R), ``Bt`` (c, R).
    sa : (c|1, R)
        ``Shat_alpha`` of the rows.
    scale, base_pos : (Pg,)
        Grid scale and base index (into ``delta``/``zeta``) of each component.
    A : (Q, R) or None
    want_cov : bool
        Also return :math:`\\sum_p w_p C_{A,p}` (c, Q, Q) for the weights ``weights`` (c, Pg).

    Returns
    -------
    mu (c, Pg, Q), var ((c|1), Pg, Q) and the weighted covariance sum (or None).
    """
    Bt = W["Bt"]
    c, R = Bt.shape
    sig = 1.0 / W["Sinv"]                                    # (c|1, R) sigma_j
    g0 = sa * sig                                            # Bhat-scale factor per coordinate
    Dt, Zt = _whitened(W, delta, zeta)
    Q = R if A is None else A.shape[0]
    P = scale.size
    n_var = max(c if (Dt.shape[0] > 1 or g0.shape[0] > 1) else 1, 1)
    mu = np.empty((c, P, Q))
    var = np.empty((n_var, P, Q))
    cov = np.zeros((c, Q, Q)) if want_cov else None
    for k in np.unique(base_pos):
        sel = np.flatnonzero(base_pos == k)
        cs = scale[sel][None, :, None]                       # (1, L, 1)
        m = 1.0 + cs * Dt[:, k, None, :]                     # (c|1, L, R)
        dm = cs * Dt[:, k, None, :] / m                      # c delta~ / m
        mw = Bt[:, None, :] * dm                             # (c, L, R)
        vd = dm * (g0 * g0)[:, None, :]                      # diagonal part of C (Bhat scale)
        rank1 = bool(zeta[k].any())
        if rank1:
            t = Zt[:, k, None, :] / m
            kap = 1.0 + cs[..., 0] * (Zt[:, k, None, :] * t).sum(axis=2)      # (c|1, L)
            tb = (Bt[:, None, :] * t).sum(axis=2)                              # (c, L)
            mw = mw + (cs[..., 0] * tb / kap)[..., None] * t
            gt = g0[:, None, :] * t                                           # (c|1, L, R)
            f = cs[..., 0] / kap                                              # (c|1, L)
        mb = mw * g0[:, None, :]                                              # (c, L, R)
        if A is None:
            mu[:, sel] = mb
            v = vd + (f[..., None] * gt * gt if rank1 else 0.0)
        else:
            mu[:, sel] = mb @ A.T
            v = vd @ (A * A).T
            if rank1:
                Ag = gt @ A.T                                                 # (c|1, L, Q)
                v = v + f[..., None] * Ag * Ag
        var[:, sel] = np.broadcast_to(np.maximum(v, 0.0), (n_var,) + v.shape[1:])
        if want_cov:
            w = weights[:, sel]                                               # (c, L)
            dsum = np.einsum("jl,jlr->jr", w, np.broadcast_to(vd, (c,) + vd.shape[1:]))
            if A is None:
                cov[:, np.arange(R), np.arange(R)] += dsum
            else:
                cov += np.einsum("qr,jr,sr->jqs", A, dsum, A, optimize=True)
            if rank1:
                Ag = gt if A is None else gt @ A.T
                Ag = np.broadcast_to(Ag, (c,) + Ag.shape[1:])
                fw = w * np.broadcast_to(f, w.shape)
                cov += np.einsum("jl,jlq,jls->jqs", fw, Ag, Ag, optimize=True)
    return mu, var, cov
