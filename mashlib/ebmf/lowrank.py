r"""Low-rank representations :math:`X = U\,\mathrm{diag}(d)\,V^\top` as flashier accepts them (``list(u, d, v)``).

A dict (or object) with fields ``u`` and ``v`` (either case) and optional ``d``, or numpy's
``SVDResult`` ``(U, S, Vh)``. As flashier's ``handle.udvs``: ``v`` may be given transposed
(:math:`K \times p`), ``d`` is split as :math:`\sqrt d` onto both sides, and missing values are
not allowed.
"""
from __future__ import annotations

import numpy as np

from .._errors import MashInputError

__all__ = ["is_udv", "udv_factors"]


def _field(X, names):
    for nm in names:
        if isinstance(X, dict) and nm in X:
            return X[nm]
        if not isinstance(X, dict) and hasattr(X, nm):
            return getattr(X, nm)
    return None


def is_udv(X) -> bool:
    """Whether ``X`` is a low-rank ``(u, d, v)`` representation."""
    if type(X).__name__ == "SVDResult":
        return True
    if isinstance(X, dict):
        keys = {str(k).lower() for k in X}
        return "u" in keys and "v" in keys
    return False


def udv_factors(X, what="data"):
    """``(A, B)`` with :math:`X = A B^\\top`: :math:`A = U\\sqrt d`, :math:`B = V\\sqrt d`."""
    if type(X).__name__ == "SVDResult":
        u, d, v = np.asarray(X.U, float), np.asarray(X.S, float), np.asarray(X.Vh, float).T
    else:
        if isinstance(X, dict):
            X = {str(k).lower(): v for k, v in X.items()}
        u, v, d = _field(X, ("u",)), _field(X, ("v",)), _field(X, ("d",))
        if u is None or v is None:
            raise MashInputError(f"{what}: a low-rank representation needs fields u and v (and optionally d).")
        u, v = np.asarray(u, float), np.asarray(v, float)
        d = None if d is None else np.atleast_1d(np.asarray(d, float))
    if u.ndim == 1:
        u = u[:, None]
    if v.ndim == 1:
        v = v[:, None]
    if u.ndim != 2 or v.ndim != 2:
        raise MashInputError(f"{what}: u and v must be matrices.")
    if np.isnan(u).any() or np.isnan(v).any():
        raise MashInputError(f"{what}: u and v must not have missing values.")
    if u.shape[1] != v.shape[1]:
        if u.shape[1] == v.shape[0]:
            v = v.T  # v' given instead of v, as flashier allows
        else:
            raise MashInputError(f"{what}: u ({u.shape[0]} x {u.shape[1]}) and v ({v.shape[0]} x {v.shape[1]}) "
                                 "have incompatible dimensions.")
    K = u.shape[1]
    if d is not None:
        if d.size < K:
            raise MashInputError(f"{what}: d must have at least K = {K} entries; got {d.size}.")
        r = np.sqrt(d[:K])
        u, v = u * r, v * r
    return u, v
