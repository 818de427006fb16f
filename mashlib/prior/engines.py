"""Mixture-prior engines of the protocol's ``mixture_prior`` step (pecotmr version A).

Each engine returns the prior object the protocol saves as ``{prefix}.{EM}.prior.rds``::

    {"U": {name: R x R ndarray}, "w": pandas.Series, "loglik": float | None}

* :func:`ed_bovy` (engine ``cov_ed``, the default; map 1.12): the components **and** their
  extreme-deconvolution refinements, weights from a mash fit on the strong set.
* :func:`ud` (engine ``ud``; map 1.10) and :func:`ud_unconstrained` (engine ``ud_ted``;
  map 1.11): udr's ``ud_init`` + ``ud_fit`` with pecotmr's control (``.mashUdControl``).
* :func:`mixture_prior` dispatches on the engine name; :func:`validate_prior` /
  :func:`read_prior` check a prior object or file (``read_prior``-style validation).
"""
from __future__ import annotations

import os
from collections.abc import Mapping as _MappingABC
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .._validation import check_square

__all__ = ["ENGINES", "mixture_prior", "ed_bovy", "prior_weights", "ud", "ud_unconstrained",
           "ud_control", "validate_components", "validate_prior", "read_prior", "MixturePrior"]


@dataclass(frozen=True)
class MixturePrior(_MappingABC):
    """The result of a prior engine: covariance components ``U``, their weights ``w`` and the
    engine's log-likelihood (the SoS pipeline's ``list(U, w, loglik)``).

    Also a read-only mapping (``prior["U"]``, ``dict(prior)``), as the prior RDS reads back.
    """

    U: dict
    w: pd.Series
    loglik: Optional[float] = None

    def __getitem__(self, key):
        if key not in ("U", "w", "loglik"):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(("U", "w", "loglik"))

    def __len__(self):
        return 3

    def to_r(self) -> dict:
        """The R list ``list(U, w, loglik)`` (what the protocol writes to ``*.prior.rds``)."""
        return {"U": dict(self.U), "w": self.w, "loglik": self.loglik}

    def __repr__(self) -> str:
        w = pd.Series(self.w, dtype=float) if not isinstance(self.w, pd.Series) else self.w
        top = ", ".join(f"{k} {v:.3g}" for k, v in w.sort_values(ascending=False).head(3).items())
        ll = "" if self.loglik is None else f", loglik={self.loglik:.4f}"
        return f"MixturePrior({len(self.U)} components{ll}; largest weights: {top})"

#: engine name -> function name (pecotmr's spellings ``cov_ed`` / ``ud_ted`` are aliases)
ENGINES = {"ed_bovy": "ed_bovy", "cov_ed": "ed_bovy", "ud": "ud",
           "ud_unconstrained": "ud_unconstrained", "ud_ted": "ud_unconstrained"}


# --------------------------------------------------------------------------- validation
def _as_square(m, where: str, R: int | None) -> np.ndarray:
    if isinstance(m, dict) and "mat" in m:          # udr's list(mat = ...) structure
        m = m["mat"]
    return check_square(m, where, R)[0]


def validate_components(components, R: int | None = None, name: str = "components") -> dict:
    """Check a covariance list: a non-empty, fully named dict of R x R finite matrices.

    As pecotmr's ``.mashResolveComponents``: an unnamed or empty list is an error.

    Parameters
    ----------
    components : dict
        ``name -> R x R`` array / DataFrame (or udr's ``{"mat": ...}``).
    R : int, optional
        Required dimension.
    name : str
        Argument name used in messages.

    Returns
    -------
    dict
        ``name -> ndarray`` in the original order.
    """
    if isinstance(components, (list, tuple)):
        raise MashInputError(f"`{name}` must be a named dict of covariance matrices "
                             "(name -> R x R); got an unnamed list. Give every component a name.")
    if not isinstance(components, Mapping) or len(components) == 0:
        raise MashInputError(f"`{name}` must be a non-empty dict of covariance matrices "
                             "(e.g. cov_canonical(data) | cov_pca(data, npc)); got "
                             f"{type(components).__name__}{' (empty)' if components == {} else ''}.")
    out = {}
    for i, (k, v) in enumerate(components.items()):
        if k is None or str(k) == "":
            raise MashInputError(f"`{name}`: component {i + 1} has no name; every component "
                                 "must be named.")
        out[str(k)] = _as_square(v, f"`{name}['{k}']`", R)
    return out


def validate_prior(prior, source: str = "prior") -> MixturePrior:
    """Validate a prior object ``{"U", "w", "loglik"}`` and return it normalised.

    Parameters
    ----------
    prior : dict
        Needs ``U`` (non-empty named dict of equal-size square matrices); ``w`` optional:
        either named (names must cover every U name, plus an optional ``"null"``) or of
        length ``len(U)`` or ``len(U) + 1`` (then the first is the null).
    source : str
        Name of the file or argument, for messages.

    Returns
    -------
    dict
        ``{"U": dict name -> ndarray, "w": pandas.Series or None, "loglik": float or None}``.

    Raises
    ------
    MashInputError
        A prior without ``U``, a malformed U, or weights that do not match U.
    """
    if not isinstance(prior, Mapping) or "U" not in prior:
        have = list(prior.keys()) if isinstance(prior, Mapping) else type(prior).__name__
        raise MashInputError(
            f"{source}: a prior must be a list/dict with element 'U' (named covariance "
            f"matrices), 'w' (weights) and 'loglik'; found {have}. Use the output of the "
            "mixture_prior step (ed_bovy / ud / ud_unconstrained).")
    U = validate_components(prior["U"], name=f"{source}['U']")
    dims = {a.shape[0] for a in U.values()}
    if len(dims) > 1:
        raise MashInputError(f"{source}['U']: components have different sizes {sorted(dims)}; "
                             "all must be R x R for the same R.")
    w = prior.get("w")
    if w is not None:
        if isinstance(w, Mapping):
            w = pd.Series(dict(w), dtype=float)
        if isinstance(w, pd.Series) and not isinstance(w.index, pd.RangeIndex):
            missing = [k for k in U if k not in w.index]
            if missing:
                raise MashInputError(f"{source}['w'] has no weight for component(s) "
                                     f"{missing[:5]}; w must be named like U (plus 'null').")
            w = w.astype(float)
        else:
            arr = np.asarray(w, dtype=float).ravel()
            if arr.size == len(U):
                w = pd.Series(arr, index=list(U))
            elif arr.size == len(U) + 1:
                w = pd.Series(arr, index=["null"] + list(U))
            else:
                raise MashInputError(f"{source}['w'] has {arr.size} weights for {len(U)} "
                                     "components; give len(U) (or len(U) + 1 with the null).")
        if np.any(~np.isfinite(w.to_numpy())) or np.any(w.to_numpy() < 0):
            raise MashInputError(f"{source}['w'] must be finite and non-negative.")
    loglik = prior.get("loglik")
    if loglik is not None and not isinstance(loglik, (int, float, np.floating, np.integer)):
        arr = np.asarray(loglik, dtype=float).ravel()
        loglik = float(arr[0]) if arr.size == 1 else None
    return MixturePrior(U, w, None if loglik is None else float(loglik))


def read_prior(path) -> MixturePrior:
    """Read and validate a prior RDS written by the mixture_prior step.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    dict
        As :func:`validate_prior`.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise MashInputError(f"prior file {str(p)!r} does not exist; run the mixture_prior "
                             "step (ed_bovy) first or check the path.")
    from ..io import read_rds  # noqa: PLC0415

    return validate_prior(read_rds(p), source=str(p))


# --------------------------------------------------------------------------- ed_bovy
def prior_weights(data, U: Mapping, **mash_kw) -> pd.Series:
    r"""Mixture weights of a covariance list: ``get_estimated_pi(mash(data, U, outputlevel=1))``.

    mash (default grid, ``nullbiased`` prior, mixSQP) maximises
    :math:`\sum_j \log \sum_{k,l} \pi_{kl} N(\hat b_j; 0, \omega_l^2 U_k + S_j V S_j)`
    (+ the Dirichlet penalty) and the weights are summed over the grid per covariance.

    Returns
    -------
    pandas.Series
        ``"null"`` followed by the names of ``U``.
    """
    from ..model import mash  # noqa: PLC0415
    from ..model import get_estimated_pi  # noqa: PLC0415

    m = mash(data, Ulist=dict(U), outputlevel=1, **mash_kw)
    return get_estimated_pi(m)


def ed_bovy(data, components: Mapping, tol: float = 1e-6, maxiter: float = 1e9,
            verbose: bool = False, accelerate: bool = True) -> MixturePrior:
    r"""The default engine (``cov_ed``): components plus their ED refinements, mash weights.

    Steps (pecotmr ``.mashEngineCovEd``, map 1.12):

    1. :math:`U^{ED} = \texttt{cov\_ed}(data, components)` (Bovy et al. extreme
       deconvolution, all components refined, canonical included; each refined matrix
       gets :math:`+ n^{-1/2} I`), names ``ED_<name>``;
    2. :math:`U = c(\text{components}, U^{ED})` (2K matrices);
    3. :math:`w = \texttt{get\_estimated\_pi}(\texttt{mash}(data, U, outputlevel=1))`,
       named ``"null"`` then the names of U;
    4. ``loglik = None``.

    Parameters
    ----------
    data : MashData
        The strong set with the chosen V (``mash_set_data(strong.b, strong.s, V=vhat,
        alpha, zero_Bhat_Shat_reset=1000)``).
    components : dict
        Named R x R covariance matrices (canonical, pca, flash, flash_nonneg, in the
        order they were concatenated).
    tol, maxiter : float
        ED stopping rule (mashr defaults).
    verbose : bool
        Print ED progress.
    accelerate : bool
        SQUAREM-accelerated ED (default; same stopping rule, several times fewer EM steps,
        final log-likelihood at least as high in practice) or, with False, mashr's plain EM
        iterate by iterate (R's matrices to rounding).

    Returns
    -------
    dict
        ``{"U": dict, "w": pandas.Series, "loglik": None}``.
    """
    from .ed import cov_ed  # noqa: PLC0415

    R = int(np.asarray(data.Bhat).shape[1])
    comps = validate_components(components, R=R)
    U_ed = cov_ed(data, comps, tol=tol, maxiter=maxiter, verbose=verbose, accelerate=accelerate)
    clash = [k for k in U_ed if k in comps]
    if clash:
        raise MashInputError(f"`components` already contain {clash[:3]}; names starting with "
                             "'ED_' clash with the ED refinements. Rename those components.")
    U = {**comps, **{k: np.asarray(v, dtype=float) for k, v in U_ed.items()}}
    w = prior_weights(data, U)
    return MixturePrior(U, w, None)


# --------------------------------------------------------------------------- udr engines
def ud_control(R: int, unconstrained_update: str = "ed", maxiter: int = 1000,
               tol: float = 1e-2, tol_lik: float = 1e-2) -> dict:
    """pecotmr's ``.mashUdControl``: udr control for the ``ud`` / ``ud_ted`` engines.

    Returns
    -------
    dict
        ``unconstrained_update`` ("ed" or "ted"), ``scaled_update="fa"``,
        ``resid_update="none"``, ``lambda_=R``, ``penalty_type="iw"``, ``maxiter``, ``tol``,
        ``tol_lik``.
    """
    return dict(unconstrained_update=unconstrained_update, scaled_update="fa",
                resid_update="none", lambda_=R, penalty_type="iw", maxiter=int(maxiter),
                tol=float(tol), tol_lik=float(tol_lik))


_TED_MSG = ("engine {engine!r} (TED updates) needs i.i.d. data: use effect_model='EZ' "
            "(alpha = 1: z-scores with one common V), or the 'ud' / 'ed_bovy' engine with EE. "
            "udr's TED update does not work when rows have different error covariances "
            "S_j V S_j")


def _ud_engine(data, components, update: str, n_unconstrained: int, seed: int,
               maxiter: int, tol: float, tol_lik: float, U_unconstrained_init,
               verbose: bool, penalize_non_iid: bool = False) -> MixturePrior:
    engine = "ud_unconstrained" if update == "ted" else "ud"
    R = int(np.asarray(data.Bhat).shape[1])
    if components is not None:          # validated, then ignored (pecotmr version A)
        validate_components(components, R=R)
    from ..model import cov_canonical  # noqa: PLC0415
    from .udr import ud_fit, ud_init  # noqa: PLC0415

    U_can = cov_canonical(data)
    init_kw = dict(n_unconstrained=int(n_unconstrained), U_scaled=U_can, seed=seed)
    if U_unconstrained_init is not None:
        init_kw["U_unconstrained"] = U_unconstrained_init
        init_kw.pop("n_unconstrained")
    fit0 = ud_init(data, **init_kw)
    if update == "ted" and not fit0.iid:
        raise MashInputError(_TED_MSG.format(engine=engine))
    ctrl = ud_control(R, update, maxiter=maxiter, tol=tol, tol_lik=tol_lik)
    ctrl.pop("tol")     # pecotmr passes tol, but udr's stopping rule never reads it (map 2.5)
    if not fit0.iid and not penalize_non_iid:
        # R's udr ignores lambda for non-i.i.d. rows (P18: logplt = 0, loglik_penalized ==
        # loglik), so pecotmr's EE fits are unpenalised; mashlib.prior.udr would apply its IW
        # extension, so lambda is set to 0 here to reproduce the protocol
        ctrl["lambda_"] = 0
    try:
        fit = ud_fit(fit0, control=ctrl, verbose=verbose)
    except MashInputError as e:
        if "i.i.d" in str(e):
            raise MashInputError(_TED_MSG.format(engine=engine) + f" (udr: {e})") from e
        raise
    Ufit = fit.Ulist
    names = list(Ufit)
    U = {k: _as_square(Ufit[k], f"ud_fit U['{k}']", R) for k in names}
    w = pd.Series(np.asarray(fit.w, dtype=float).ravel(), index=names)
    loglik = fit.loglik
    return MixturePrior(U, w, None if loglik is None else float(loglik))


def ud(data, components=None, n_unconstrained: int = 50, seed: int = 999, maxiter: int = 1000,
       tol: float = 1e-2, tol_lik: float = 1e-2, U_unconstrained_init=None,
       verbose: bool = False, penalize_non_iid: bool = False) -> MixturePrior:
    r"""Engine ``ud``: udr fit with ED updates of 50 unconstrained components (map 1.10).

    ``fit0 = ud_init(data, n_unconstrained=50, U_scaled=cov_canonical(data))`` (the 50
    initial matrices are Wishart(df = max(4, R), I) draws), then ``ud_fit`` with
    :func:`ud_control`: ``unconstrained_update="ed"``, ``scaled_update="fa"``,
    ``resid_update="none"``, ``lambda_=R``, ``penalty_type="iw"``, ``maxiter=1000``,
    ``tol=tol_lik=1e-2``. EE data (alpha = 0) take udr's non-i.i.d. path
    (:math:`x_j \sim N(0, U_k + S_j V S_j)`); R's udr ignores the penalty there, so
    ``lambda_`` is set to 0 for non-i.i.d. data unless ``penalize_non_iid`` (mashlib's IW
    extension). EZ data take the i.i.d. path with the inverse-Wishart penalty
    (:math:`\lambda = R`, :math:`S_0 = I`). No mash fit: ``w`` comes from udr.

    Parameters
    ----------
    data : MashData
        Strong set with V.
    components : dict, optional
        Validated (a non-empty named covariance list) and then ignored, as pecotmr.
    n_unconstrained : int
        Number of unconstrained components.
    seed : int
        Seed of the Wishart draws (numpy; R's stream cannot be reproduced, P20).
    maxiter, tol, tol_lik
        udr stopping rule.
    U_unconstrained_init : dict or list, optional
        Initial unconstrained matrices (e.g. imported from R) instead of random draws.
    verbose : bool
        Print udr progress.
    penalize_non_iid : bool
        Apply the IW penalty (lambda = R) also to non-i.i.d. (EE) data, which R does not
        do; default False reproduces pecotmr.

    Returns
    -------
    dict
        ``{"U": canonical names then unconstrained1..n, "w": Series named by U (no
        "null"), "loglik": udr log-likelihood}``.
    """
    return _ud_engine(data, components, "ed", n_unconstrained, seed, maxiter, tol, tol_lik,
                      U_unconstrained_init, verbose, penalize_non_iid)


def ud_unconstrained(data, components=None, n_unconstrained: int = 50, seed: int = 999,
                     maxiter: int = 1000, tol: float = 1e-2, tol_lik: float = 1e-2,
                     U_unconstrained_init=None, verbose: bool = False) -> dict:
    r"""Engine ``ud_ted``: as :func:`ud` with TED updates (penalised TED with the IW prior).

    TED needs i.i.d. data (a common error covariance for all rows): with EE data
    (rows with different :math:`S_j V S_j`) udr fails, and this raises a
    :class:`~mashlib._errors.MashInputError` telling to use ``effect_model='EZ'``.

    Parameters and return value as :func:`ud`.
    """
    return _ud_engine(data, components, "ted", n_unconstrained, seed, maxiter, tol, tol_lik,
                      U_unconstrained_init, verbose)


# --------------------------------------------------------------------------- dispatcher
def mixture_prior(data, components=None, engine: str = "ed_bovy", **kwargs) -> dict:
    """Build the mixture prior with one of the protocol engines.

    Parameters
    ----------
    data : MashData
        Strong set with the chosen V.
    components : dict
        Named covariance matrices (required by ``ed_bovy``; validated by the udr engines).
    engine : {"ed_bovy", "ud", "ud_unconstrained"}
        Also pecotmr's spellings ``"cov_ed"`` and ``"ud_ted"``.
    **kwargs
        Passed to the engine.

    Returns
    -------
    dict
        ``{"U", "w", "loglik"}``.
    """
    key = str(engine).lower()
    if key not in ENGINES:
        raise MashInputError(f"`engine`: unknown engine {engine!r}; valid engines are "
                             "'ed_bovy' (alias 'cov_ed'), 'ud', 'ud_unconstrained' "
                             "(alias 'ud_ted').")
    fn = globals()[ENGINES[key]]
    if fn is ed_bovy:
        if components is None:
            raise MashInputError("`components` is required by engine 'ed_bovy': pass the "
                                 "named covariance matrices to refine (e.g. canonical + pca).")
        return ed_bovy(data, components, **kwargs)
    return fn(data, components, **kwargs)
