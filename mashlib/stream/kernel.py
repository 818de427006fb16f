"""Model preparation and per-chunk posterior kernels for the streaming posterior.

The streaming layer (:mod:`mashlib.stream`) applies a *fixed* fitted mash model to
row chunks. Everything it needs from the model is packed once into a
:class:`StreamModel`: the kept mixture components ``U`` (K x R x R, already
scaled by the grid, ``null`` included as a zero matrix), their weights ``pi``
(K,), the condition names and the effect model ``alpha``.

A *kernel* maps one chunk of transformed data to posterior summaries::

    kernel(Bhat, Shat, Shat_alpha, V, U, pi, A=None, output_posterior_cov=False)
        -> {"PosteriorMean": (n, Q), "PosteriorSD": (n, Q), "lfsr": (n, Q),
            "lfdr": (n, Q), "NegativeProb": (n, Q), ["PosteriorCov": (n, Q, Q)]}

The MASH engine's row kernel (``mashlib.posterior_chunk``) is used when
it exists; :func:`posterior_chunk_fallback` below is a small vectorised stand-in
with the same contract (used only when the engine's kernel is unavailable).

Math (map §2.2), for row j and kept component k, with Sigma_j = S_j V S_j built
from the transformed ``Shat`` and T_jk = Sigma_j + U_k = L L^T:

* log-likelihood  l_jk = log N(b_j; 0, T_jk); weights w_jk ∝ pi_k exp(l_jk - max_k l_jk);
* mu1 = U_k T^{-1} b_j and U1 = U_k - U_k T^{-1} U_k  (= U_k (Sigma^{-1} U_k + I)^{-1});
* back-transform mu = a_j ⊙ mu1, C = diag(a_j) U1 diag(a_j) with a_j = Shat_alpha_j,
  then mu_A = A mu, C_A = A C A^T;
* PosteriorMean = Σ_k w mu, PosteriorSD = sqrt(Σ_k w (mu² + σ²) - PM²),
  lfdr = Σ_k w 1[σ = 0], NegativeProb = Σ_k w Φ(-mu/σ),
  lfsr = 1 - NP if NP > (1 - lfdr)/2 else NP + lfdr.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.special import ndtr

from .._blas import blas_threads  # noqa: F401  (re-exported for the streaming modules)
from .._errors import MashInputError
from ..model.samples import component_posteriors  # noqa: F401  (moved there; re-exported)

Kernel = Callable[..., dict]

OUTPUT_NAMES = ("PosteriorMean", "PosteriorSD", "lfsr", "lfdr", "NegativeProb")
LOG2PI = np.log(2.0 * np.pi)


@dataclass
class StreamModel:
    """A fitted mash model reduced to what the posterior of new rows needs.

    Attributes
    ----------
    U : ndarray, shape (K, R, R)
        Kept mixture covariances (grid-scaled; the point mass is a zero matrix).
    pi : ndarray, shape (K,)
        Their mixture weights (not renormalised, as mashr).
    conditions : list of str or None
        Condition names in the order of the rows/columns of each ``U``.
    alpha : float
        Effect model of the fit (0 = EE, 1 = EZ); the new data are transformed the same way.
    component_names : list of str
        Names of the kept components (as mashr's ``expand_cov``).
    """

    U: np.ndarray
    pi: np.ndarray
    conditions: list[str] | None = None
    alpha: float = 0.0
    component_names: list[str] = field(default_factory=list)

    @property
    def n_components(self) -> int:
        """Number K of kept components."""
        return int(self.U.shape[0])

    @property
    def n_conditions(self) -> int:
        """Number R of conditions."""
        return int(self.U.shape[1])

    def subset_conditions(self, keep: Sequence[int]) -> "StreamModel":
        """Return the model restricted to the condition indices ``keep`` (rows/cols of each U)."""
        keep = np.asarray(keep, dtype=int)
        conds = None if self.conditions is None else [self.conditions[i] for i in keep]
        U = np.ascontiguousarray(self.U[:, keep][:, :, keep])
        return StreamModel(U, self.pi.copy(), conds, self.alpha, list(self.component_names))


def _expand(Ulist: dict, grid: np.ndarray, usepointmass: bool):
    """mashr ``expand_cov``: null first, then grid-major ``grid_l^2 U_k`` named ``<name>.<l>``."""
    names = list(Ulist)
    mats = [np.asarray(Ulist[n], dtype=float) for n in names]
    R = mats[0].shape[0]
    out, out_names = [], []
    if usepointmass:
        out.append(np.zeros((R, R)))
        out_names.append("null")
    for l, g in enumerate(np.asarray(grid, dtype=float), start=1):
        for n, U in zip(names, mats):
            out.append(g * g * U)
            out_names.append(f"{n}.{l}")
    return np.stack(out), out_names


def _first_attr(obj, names):
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
        if isinstance(obj, dict) and obj.get(n) is not None:
            return obj[n]
    return None


def prepare_model(model_or_g, *, conditions=None, pi_thresh: float = 1e-10) -> StreamModel:
    """Reduce a fitted model to a :class:`StreamModel` (kept components only).

    Parameters
    ----------
    model_or_g : MashResult, FittedG, StreamModel or dict
        A ``mash`` result (its ``fitted_g``/``g`` and ``alpha`` are used), a ``FittedG``
        (``pi``, ``Ulist``, ``grid``, ``usepointmass``) or a dict with those keys.
    conditions : list of str, optional
        Condition names of the model when the model object does not carry them
        (taken from the ``Ulist`` matrices' names or the fit's data otherwise).
    pi_thresh : float
        Components with ``pi <= pi_thresh`` are dropped, as mashr.

    Returns
    -------
    StreamModel
    """
    if isinstance(model_or_g, StreamModel):
        m = model_or_g
        if conditions is not None:
            m = StreamModel(m.U, m.pi, list(conditions), m.alpha, list(m.component_names))
        return m
    alpha = _first_attr(model_or_g, ("alpha",))
    g = _first_attr(model_or_g, ("fitted_g", "g")) or model_or_g
    pi = _first_attr(g, ("pi",))
    Ulist = _first_attr(g, ("Ulist",))
    grid = _first_attr(g, ("grid",))
    if pi is None or Ulist is None or grid is None:
        raise MashInputError(
            "model_or_g: expected a mash result or FittedG with pi, Ulist and grid; got "
            f"{type(model_or_g).__name__}. Pass the object returned by mash() or its fitted_g.")
    usepm = _first_attr(g, ("usepointmass",))
    usepm = True if usepm is None else bool(usepm)
    if not isinstance(Ulist, dict):
        Ulist = {f"U_{i + 1}": u for i, u in enumerate(Ulist)}
    try:  # the engine's own path, so the components are bit-identical to its posterior
        from ..model import check_Ulist, expand_cov
    except ImportError:
        U, names = _expand(Ulist, grid, usepm)
    else:
        xU = expand_cov(check_Ulist(Ulist), np.asarray(grid, float), usepm)
        names = list(xU)
        U = np.stack([xU[n] for n in names])
    pi = np.asarray(pi, dtype=float).ravel()
    if pi.size != U.shape[0]:
        raise MashInputError(
            f"model_or_g: pi has {pi.size} entries but Ulist x grid gives {U.shape[0]} "
            "components; the fitted model is inconsistent, refit it.")
    keep = np.flatnonzero(pi > pi_thresh)
    if keep.size == 0:
        raise MashInputError(f"pi_thresh={pi_thresh}: no component has pi above it; lower pi_thresh.")
    if conditions is None:
        # a FittedG records its fit's names (None: the data were unnamed); a MashResult's own
        # ``conditions`` are placeholders "1".."R" then, so they are only a fallback
        recorded = hasattr(g, "conditions") and not isinstance(g, dict)
        conditions = g.conditions if recorded else _first_attr(model_or_g, ("conditions",))
        if conditions is None and not recorded:
            data = _first_attr(model_or_g, ("data",))
            conditions = None if data is None else _first_attr(data, ("conditions",))
        if conditions is None:
            first = next(iter(Ulist.values()))
            cols = getattr(first, "columns", None)
            conditions = None if cols is None else [str(c) for c in cols]
    conditions = None if conditions is None else [str(c) for c in conditions]
    return StreamModel(np.ascontiguousarray(U[keep]), pi[keep], conditions,
                       float(alpha) if alpha is not None else 0.0, [names[i] for i in keep])


def transform_chunk(Bhat: np.ndarray, Shat: np.ndarray, alpha: float):
    """Row-local part of ``mash_set_data``: NA handling and the alpha transform.

    Returns ``(Bhat_t, Shat_t, Shat_alpha)``; NA cells get Bhat 0, Shat 1e6, Shat_alpha 1.
    """
    Bhat = np.array(Bhat, dtype=float)
    Shat = np.broadcast_to(np.asarray(Shat, dtype=float), Bhat.shape).copy()
    na = np.isnan(Bhat)
    if alpha != 0 and not np.all(Shat == 1):
        Sa = Shat ** alpha
        Bhat = Bhat / Sa
        Shat = Shat ** (1.0 - alpha)
    else:
        Sa = np.ones_like(Shat)
    if na.any():
        Bhat[na] = 0.0
        Shat[na] = 1e6
        Sa[na] = 1.0
    return Bhat, Shat, Sa


def posterior_chunk_fallback(Bhat, Shat, Shat_alpha, V, U, pi, A=None, output_posterior_cov=False):
    """Vectorised posterior summaries of one chunk (same contract as the engine's kernel).

    See the module docstring for the formulas. Returns a dict of (n, Q) arrays
    (``PosteriorCov`` is (n, Q, Q) when requested).
    """
    cp = component_posteriors(Bhat, Shat, Shat_alpha, V, U, pi, A, full_cov=output_posterior_cov)
    w, mu = cp["w"], cp["mu"]
    var = np.diagonal(cp["C"], axis1=-2, axis2=-1) if output_posterior_cov else cp["var"]
    sd = np.sqrt(np.maximum(var, 0.0))
    zero = sd == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        neg = np.where(zero, 0.0, ndtr(-mu / np.where(zero, 1.0, sd)))
    pm = np.einsum("nk,nkq->nq", w, mu)
    e2 = np.einsum("nk,nkq->nq", w, mu * mu + sd * sd)
    lfdr = np.einsum("nk,nkq->nq", w, np.broadcast_to(zero, mu.shape).astype(float))
    negp = np.einsum("nk,nkq->nq", w, neg)
    lfsr = np.where(negp > 0.5 * (1.0 - lfdr), 1.0 - negp, negp + lfdr)
    out = {"PosteriorMean": pm, "PosteriorSD": np.sqrt(np.maximum(e2 - pm * pm, 0.0)),
           "lfsr": np.maximum(lfsr, 0.0), "lfdr": lfdr, "NegativeProb": negp}
    if output_posterior_cov:
        C = cp["C"]
        if cp["common"]:
            Cw = np.einsum("nk,kab->nab", w, C)
        else:
            Cw = np.einsum("nk,nkab->nab", w, C)
        Cw += np.einsum("nk,nka,nkb->nab", w, mu, mu) - pm[:, :, None] * pm[:, None, :]
        out["PosteriorCov"] = Cw
    return out


def resolve_kernel(kernel: Kernel | None = None) -> Kernel:
    """The per-chunk kernel: the given one, else the engine's, else the fallback."""
    if kernel is not None:
        return kernel
    try:
        from ..model import posterior_chunk  # the MASH engine's row kernel
    except ImportError:
        return posterior_chunk_fallback
    return posterior_chunk


def kernel_extras(kernel: Kernel, U: np.ndarray) -> dict:
    """Keyword arguments precomputed once per run for a kernel (the engine's component basis)."""
    try:
        from ..model import posterior_chunk
        from ..model import ComponentBasis
    except ImportError:
        return {}
    if kernel is posterior_chunk:
        return {"basis": ComponentBasis.from_stack(U)}
    return {}


def bytes_per_row(K: int, R: int, Q: int | None = None, *, common: bool = False,
                  posterior_cov: bool = False, samples: int = 0, long_table: bool = False) -> float:
    """Analytic estimate of the transient bytes one chunk row costs.

    Counts the kernel's float64 temporaries: with per-row covariances the (K, R, R)
    Cholesky factor, its inverse, ``L^{-1}U`` and ``U1`` (4 K R² doubles), plus
    about 8 (K, R) arrays (means, sds, tail probabilities) and the input/output
    rows; with a common covariance only the (K, R) terms scale with the rows.
    Used when no calibration chunk is run (see :func:`mashlib.stream.estimate_memory`).
    """
    Q = R if Q is None else Q
    per = 8.0 * (8 * K * Q + 12 * R + 10 * Q)
    if not common:
        per += 8.0 * 4 * K * R * R
    if posterior_cov or samples:
        per += 8.0 * (K * Q * Q + 2 * Q * Q)
    if samples:
        per += 8.0 * samples * (3 * Q + 2)
    if long_table:
        per += 400.0 * Q
    return per

