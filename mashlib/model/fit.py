"""Fitting mash: grid, mixture weights, posterior and log-likelihoods (mashr ``R/mash.R``).

Map §2.2 "Fitting" and "Likelihoods"; pitfalls P4, P6, P7, P23, P30.

The prior on each effect is the mixture

.. math::  b_j \\sim \\pi_0 \\delta_0 + \\sum_{k,l} \\pi_{kl} N_R(0, \\omega_l^2 U_k),

with the grid ``omega`` from :func:`autoselect_grid`; ``pi`` maximises the penalised
likelihood ``sum_j log sum_p pi_p exp(L~_jp) + sum_p (lambda_p - 1) log pi_p`` (``nullbiased``
prior: lambda = 10 on the null, 1 elsewhere) by mix-SQP from a uniform start
(:func:`mashlib.eb.mixopt.mix_sqp`, as ``ashr::mixSQP``).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from .._blas import single_blas_thread
from .._errors import MashInputError
from .._log import say
from .._validation import match_conditions
from .covariances import check_Ulist, expand_cov, normalize_Ulist
from .contrast import contrast_posterior_A
from .data import MashData
from .likelihood import DEFAULT_MEMORY_BYTES, calc_relative_lik_matrix
from .posterior import compute_posterior_matrices, compute_posterior_weights
from .samples import draw_posterior_samples

log = logging.getLogger("mashlib")
from ._vloglik import needed_components, vlogliks

__all__ = ["autoselect_grid", "FittedG", "MashResult", "mash", "mash_compute_posterior_matrices",
           "mash_compute_vloglik", "mash_compute_loglik", "set_prior", "optimize_pi"]


@dataclass
class FittedG:
    """Fitted mash prior (mashr ``fitted_g``).

    Attributes
    ----------
    pi : ndarray (P,)
        Mixture weights in :func:`expand_cov` order (``null`` first when usepointmass).
    Ulist : dict name -> R x R ndarray
        The (normalised) covariance matrices.
    grid : ndarray (L,)
        Scaling grid.
    usepointmass : bool
    conditions : list of str or None
        Condition names of the data the prior was fitted to, in the order of the rows and
        columns of each U (None when the data had no names). New data are matched to them
        by name (:func:`mash_compute_posterior_matrices`, ``mash(g=..., fixg=True)``).
    """

    pi: np.ndarray
    Ulist: dict
    grid: np.ndarray
    usepointmass: bool = True
    conditions: Optional[list] = None

    def component_names(self) -> list:
        """Names ``null``, ``<U>.<l>`` as :func:`expand_cov`."""
        names = ["null"] if self.usepointmass else []
        return names + [f"{k}.{l + 1}" for l in range(len(self.grid)) for k in self.Ulist]

    def expanded(self) -> dict:
        return expand_cov(self.Ulist, self.grid, self.usepointmass)

    def __repr__(self) -> str:
        pi = np.asarray(self.pi, float)
        R = next(iter(self.Ulist.values())).shape[0] if self.Ulist else 0
        return (f"FittedG({len(self.Ulist)} covariance matrices ({R} x {R}) x {len(self.grid)} grid values"
                f"{' + null' if self.usepointmass else ''} = {pi.size} components, "
                f"{int(np.sum(pi > 0))} with weight > 0; largest: {_top_weights(self)})")


@dataclass
class MashResult:
    """Output of :func:`mash` (mashr class ``"mash"``).

    Attributes
    ----------
    result : dict
        ``PosteriorMean``, ``PosteriorSD``, ``lfsr``, ``NegativeProb`` (and ``lfdr`` when
        asked) as J x Q DataFrames labelled by row ids and conditions; ``PosteriorCov``
        (outputlevel >= 3) as a **(J, Q, Q)** ndarray (R stores Q x Q x J;
        ``PosteriorCov[j]`` here is R's ``PosteriorCov[,,j]``).  Empty at outputlevel 1.
    loglik : float
        ``sum(vloglik)``, on the Bhat scale (Jacobian ``- sum log Shat_alpha`` included).
    vloglik, null_loglik, alt_loglik : ndarray (J,)
        Per-effect log-likelihoods (null/alt are None without the point mass).
    fitted_g : FittedG
    posterior_weights : DataFrame (J, kept components)
    alpha : float
    lm : dict or None
        ``loglik_matrix`` (J, P) and ``lfactors`` (J,), at outputlevel 4.
    """

    result: dict
    loglik: float
    vloglik: np.ndarray
    null_loglik: Optional[np.ndarray]
    alt_loglik: Optional[np.ndarray]
    fitted_g: FittedG
    posterior_weights: pd.DataFrame
    alpha: float
    lm: Optional[dict] = None
    conditions: list = field(default_factory=list)
    row_ids: Optional[list] = None

    def to_r(self, rows: Optional[list] = None, conditions: Optional[list] = None, labelled=None):
        """mashr's ``"mash"`` list (an :class:`~mashlib.io.RList` that :func:`~mashlib.write_rds`
        writes and R reads as ``saveRDS(mash(...))`` gives), with the dimnames R keeps; see
        :func:`mashlib.mash_to_r` (``rows``/``conditions`` default to the fit's, ``labelled``
        names the Ulist matrices that carry condition names in R)."""
        from ._r_out import mash_to_r
        return mash_to_r(self, rows, conditions, labelled=labelled)

    def __repr__(self) -> str:
        J = len(self.vloglik)
        outs = ", ".join(k for k in self.result) or "none (outputlevel 1)"
        return (f"MashResult({J} effects x {len(self.conditions)} conditions, loglik={self.loglik:.4f}, "
                f"alpha={self.alpha:g}, {self.fitted_g.pi.size} components; posterior: {outs})")


def _top_weights(g, n: int = 3) -> str:
    pi = np.asarray(g.pi, float)
    names = g.component_names()
    order = np.argsort(-pi, kind="stable")[:n]
    return ", ".join(f"{names[i]} {pi[i]:.3g}" for i in order if i < len(names))


#: largest gmax / gmin autoselect_grid accepts (~340 grid points at mult sqrt(2)); wider grids
#: overflow the likelihood (seen at 1e100)
GRID_SPAN_LIMIT = 1e50


def autoselect_grid(data: MashData, mult: float = np.sqrt(2)) -> np.ndarray:
    """Grid of prior scales (mashr ``autoselect_grid``, P15), on the transformed scale.

    With ``gmin = min(Shat)/10`` and ``gmax = 2 sqrt(max(Bhat^2 - Shat^2))`` (``8 gmin``
    when all ``Bhat^2 <= Shat^2``), over cells with finite non-zero Shat and non-NA Bhat:
    ``mult^(-n:0) * gmax`` with ``n = ceil(log2(gmax/gmin)/log2(mult))``; ``mult == 0``
    gives ``(0, gmax/2)``.
    """
    B, S = data.Bhat, data.Shat
    inc = ~((S == 0) | ~np.isfinite(S) | np.isnan(B))
    b, s = B[inc], S[inc]
    if b.size == 0:
        raise MashInputError(f"data: has no usable cell ({B.shape[0]} rows; every Shat is zero, "
                             "infinite or missing); autoselect_grid needs at least one effect.")
    gmin = s.min() / 10
    with np.errstate(over="ignore", invalid="ignore"):
        gmax = 8 * gmin if np.all(b ** 2 <= s ** 2) else 2 * np.sqrt(np.max(b ** 2 - s ** 2))
    if not (np.isfinite(gmax) and gmax / gmin <= GRID_SPAN_LIMIT):
        j = int(np.argmax(np.abs(np.where(inc, B, 0.0))) // B.shape[1])
        raise MashInputError(
            f"data: |Bhat| up to {np.abs(b).max():.3g} (row {j}) against a smallest Shat of "
            f"{s.min():.3g}: the grid of prior scales would span {gmax / gmin:.3g}-fold (more than "
            f"{GRID_SPAN_LIMIT:g}), beyond what double precision can fit. Check the units of Bhat "
            "and Shat (a stray scale factor?), or remove the extreme rows.")
    if mult == 0:
        return np.array([0.0, gmax / 2])
    npoint = int(np.ceil(np.log2(gmax / gmin) / np.log2(mult)))
    return mult ** np.arange(-npoint, 1, dtype=float) * gmax


def set_prior(K: int, prior="nullbiased", nullweight: float = 10) -> np.ndarray:
    """Dirichlet prior vector: ``nullbiased`` (nullweight on component 1), ``uniform``, or numeric."""
    if isinstance(prior, str):
        if prior == "uniform":
            return np.ones(K)
        if prior == "nullbiased":
            p = np.ones(K)
            p[0] = nullweight
            return p
        raise MashInputError(f"prior: {prior!r} must be 'nullbiased', 'uniform' or a numeric vector.")
    p = np.asarray(prior, float)
    if p.size != K:
        raise MashInputError(f"prior: has length {p.size} but there are {K} mixture components.")
    return p


def optimize_pi(matrix_lik, prior, optmethod: str = "mixSQP", control=None,
                log: bool = False) -> np.ndarray:
    """Mixture weights from a J x P likelihood matrix (mashr ``optimize_pi``), uniform start.

    ``log=True``: ``matrix_lik`` holds log-likelihoods (mix-SQP then exponentiates them into
    its own copy; mashr passes ``exp`` of its relative log-likelihood matrix, the same
    numbers)."""
    from ..eb import mixopt
    K = matrix_lik.shape[1]
    pi_init = np.full(K, 1.0 / K)
    if optmethod in ("mixSQP", "mixIP"):
        pihat, _ = mixopt.mix_sqp(matrix_lik, prior, pi_init=pi_init, control=control, log=log)
    elif optmethod in ("mixEM", "cxxMixSquarem"):
        pihat = mixopt.mix_em(np.exp(matrix_lik) if log else matrix_lik, prior,
                              pi_init=pi_init, control=control)[0]
    else:
        raise MashInputError(f"optmethod: {optmethod!r} is not one of mixSQP, mixEM.")
    return np.asarray(pihat, float)


def _vlogliks(pi, lm, Shat_alpha, usepointmass, E=None):
    """vloglik, null_loglik, alt_loglik from the relative likelihood (P30 Jacobian); one pass,
    see :func:`mashlib.model._vloglik.vlogliks`."""
    return vlogliks(pi, lm, Shat_alpha, usepointmass, E)


def _frame(x, data: MashData, cols):
    return pd.DataFrame(x, index=data.row_ids, columns=cols)


def _result_frames(post: dict, data: MashData, A) -> dict:
    if A is None:
        cols = list(data.conditions)
    elif isinstance(A, pd.DataFrame):
        cols = [str(i) for i in A.index]
    else:
        cols = [str(i + 1) for i in range(np.asarray(A).shape[0])]
    out = {}
    for k in ("PosteriorMean", "PosteriorSD", "lfdr", "NegativeProb", "lfsr"):
        out[k] = _frame(post[k], data, cols)
    if "PosteriorCov" in post:
        out["PosteriorCov"] = post["PosteriorCov"]
    return out


def _check_alpha(g_or_model, data):
    if isinstance(g_or_model, dict):   # a model R wrote, as read_rds returns it
        obj = _unwrap_r_model(g_or_model)
        fg = _fitted_g_from_r(obj)
        alpha = obj.get("alpha") if "fitted_g" in obj else None
        if alpha is not None and float(np.asarray(alpha).ravel()[0]) != data.alpha:
            raise MashInputError(
                f"data: alpha = {data.alpha} but the mash model was fitted with alpha = "
                f"{float(np.asarray(alpha).ravel()[0])}; rebuild the data with mash_set_data(..., alpha="
                f"{float(np.asarray(alpha).ravel()[0])}).")
        return fg
    if isinstance(g_or_model, MashResult):
        if g_or_model.alpha != data.alpha:
            raise MashInputError(
                f"data: alpha = {data.alpha} but the mash model was fitted with alpha = "
                f"{g_or_model.alpha}; rebuild the data with mash_set_data(..., alpha="
                f"{g_or_model.alpha}).")
        return g_or_model.fitted_g
    if isinstance(g_or_model, FittedG):
        return g_or_model
    raise MashInputError("g: must be a MashResult, a FittedG or a mash model read from R (read_rds).")


def _unwrap_r_model(obj):
    """The mash list inside the protocol's ``list(mash_model, vhat_file, prior_file)``."""
    if isinstance(obj, dict) and isinstance(obj.get("mash_model"), dict) and "fitted_g" not in obj:
        return obj["mash_model"]
    return obj


def _labels(x):
    if isinstance(x, pd.DataFrame) and not isinstance(x.columns, pd.RangeIndex):
        return [str(c) for c in x.columns]
    return None


def _fitted_g_from_r(obj, src: str = "g") -> FittedG:
    """A FittedG from an R list: a mash model (its ``fitted_g``) or a bare ``fitted_g``
    (``pi``, ``Ulist``, ``grid``, ``usepointmass``); see :func:`mashlib.fitted_g_from_r`.
    ``conditions`` come from the model's ``result`` columns or a labelled ``Ulist`` matrix."""
    obj = _unwrap_r_model(obj)
    g = obj.get("fitted_g", obj) if isinstance(obj, dict) else obj
    if not isinstance(g, dict):
        raise MashInputError(f"{src}: fitted_g is a {type(g).__name__}; expected list(pi, Ulist, grid, usepointmass)")
    missing = [k for k in ("pi", "Ulist", "grid") if g.get(k) is None]
    if missing:
        raise MashInputError(f"{src}: fitted_g lacks {', '.join(missing)}; expected "
                             "list(pi, Ulist, grid, usepointmass) as mashr writes it")
    Ulist = g["Ulist"]
    if isinstance(Ulist, list):                # an unnamed R list
        Ulist = {f"U.{i + 1}": u for i, u in enumerate(Ulist)}
    if not isinstance(Ulist, dict) or not Ulist:
        raise MashInputError(f"{src}: fitted_g$Ulist must be a non-empty named list of matrices")
    usepm = g.get("usepointmass", True)

    def mat(x):
        if isinstance(x, dict) and "mat" in x:  # udr's list(mat = ...)
            x = x["mat"]
        return np.asarray(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=float)
    res = obj.get("result") if isinstance(obj, dict) and "fitted_g" in obj else None
    conds = _labels((res or {}).get("PosteriorMean")) if isinstance(res, dict) else None
    conds = conds or next((c for c in map(_labels, Ulist.values()) if c), None)
    fg = FittedG(pi=np.asarray(g["pi"], dtype=float).ravel(), Ulist={str(k): mat(v) for k, v in Ulist.items()},
                 grid=np.atleast_1d(np.asarray(g["grid"], dtype=float)).ravel(),
                 usepointmass=True if usepm is None else bool(np.asarray(usepm).ravel()[0]))
    R = next(iter(fg.Ulist.values())).shape[0]
    fg.conditions = conds if conds is not None and len(conds) == R else None
    P = len(fg.component_names())
    if fg.pi.size != P:
        raise MashInputError(f"{src}: fitted_g$pi has {fg.pi.size} entries but Ulist ({len(fg.Ulist)}) x "
                             f"grid ({fg.grid.size}){' + null' if fg.usepointmass else ''} gives {P}; "
                             "the model is inconsistent")
    names = getattr(g["pi"], "index", None)
    if names is not None and not isinstance(names, pd.RangeIndex):
        expect = fg.component_names()
        bad = next((i for i, (a, b) in enumerate(zip(map(str, names), expect)) if a != b), None)
        if bad is not None:
            raise MashInputError(f"{src}: fitted_g$pi is named {list(names)[bad]!r} at position {bad + 1} where "
                                 f"Ulist x grid gives {expect[bad]!r}; the weights do not belong to this Ulist")
    return fg


def model_conditions(g) -> Optional[list]:
    """Condition names of a fitted model (MashResult or FittedG), or None when unknown.

    ``fitted_g.conditions`` when set (mash records the data's names), else the labels of
    the first Ulist matrix when it is a labelled DataFrame.
    """
    fg = g.fitted_g if isinstance(g, MashResult) else g
    conds = getattr(fg, "conditions", None)
    if conds is not None:
        return [str(c) for c in conds]
    Ul = getattr(fg, "Ulist", None)
    first = next(iter(Ul.values()), None) if isinstance(Ul, dict) and Ul else None
    if isinstance(first, pd.DataFrame) and not isinstance(first.columns, pd.RangeIndex):
        return [str(c) for c in first.columns]
    return None


def _permute_conditions(data: MashData, perm: np.ndarray, conds: list) -> MashData:
    V = data.V[np.ix_(perm, perm)] if data.commonV else data.V[perm][:, perm, :]
    return dataclasses.replace(data, Bhat=data.Bhat[:, perm], Shat=data.Shat[:, perm],
                               Shat_alpha=data.Shat_alpha[:, perm], V=V, conditions=list(conds))


def align_to_model(g, data: MashData, A=None, what: str = "data"):
    """Match ``data``'s conditions to the fitted model's by name.

    Returns ``(data, A)`` with the data's columns (and V) reordered to the model's
    condition order when they were in another order (logged at INFO; results are then
    in the model's order). A DataFrame ``A`` whose columns are the model's condition names is
    reordered by name; any other ``A`` is ambiguous after a reorder and refused (without a
    reorder it is taken by position, as before). Contrast data in another order are refused.

    Raises
    ------
    MashInputError
        When the names differ (missing and extra conditions listed), or ``A`` is a bare
        array while the data had to be reordered.
    """
    conds = model_conditions(g)
    perm = match_conditions(conds, data.conditions, data_named=data.conditions_named, what=what)
    contrast = getattr(data, "L", None) is not None     # A then acts on the original conditions
    named_A = False
    if isinstance(A, pd.DataFrame) and conds is not None and data.conditions_named \
            and not contrast and not isinstance(A.columns, pd.RangeIndex):
        cols = [str(c) for c in A.columns]
        if sorted(cols) == sorted(conds):
            named_A = True
            A = pd.DataFrame(A.to_numpy(dtype=float), index=A.index, columns=cols)[conds]
    if perm is None:
        return data, A
    if contrast:
        raise MashInputError(
            f"{what}: contrast conditions {list(data.conditions)} are in another order than the "
            f"model's {conds}; build the contrast data from Bhat/Shat in the model's condition order.")
    if A is not None and not named_A:
        raise MashInputError(
            f"A: {what}'s conditions {list(data.conditions)} are in another order than the model's "
            f"{conds}, so the columns of an unlabelled A are ambiguous; pass A as a DataFrame whose "
            "columns are the model's condition names, or give the data in the model's order.")
    log.info("%s: conditions reordered by name to the fitted model's order %s (given as %s); the "
             "results are in the model's order.", what, conds, list(data.conditions))
    return _permute_conditions(data, perm, conds), A


def _A_array(A, R):
    if A is None:
        return None
    Aa = np.asarray(A.to_numpy() if isinstance(A, pd.DataFrame) else A, float)
    if Aa.ndim == 1:
        Aa = Aa[None]
    if Aa.ndim != 2 or Aa.shape[1] != R:
        raise MashInputError(f"A: is not a proper transformation; it must have R = {R} columns "
                             f"(got shape {Aa.shape}).")
    return Aa


@single_blas_thread
def mash(data: MashData, Ulist=None, gridmult: float = np.sqrt(2), grid=None,
         normalizeU: Optional[bool] = None, usepointmass: Optional[bool] = None,
         g: Optional[FittedG] = None, fixg: bool = False, prior="nullbiased",
         nullweight: float = 10, optmethod: str = "mixSQP", control=None, verbose: bool = False,
         outputlevel: int = 2, pi_thresh: float = 1e-10, A=None, output_lfdr: bool = False,
         memory_bytes: int = DEFAULT_MEMORY_BYTES, posterior_samples: int = 0,
         seed=123) -> MashResult:
    """Fit mash and compute posteriors (mashr ``mash``).

    Parameters
    ----------
    data : MashData
    Ulist : dict name -> R x R
        Prior covariances (normalised to unit max diagonal when ``normalizeU``, default True).
    gridmult, grid : float, array_like
        Grid multiplier for :func:`autoselect_grid`, or an explicit grid.
    usepointmass : bool
        Include the ``null`` point mass (default True).
    g : FittedG or MashResult, optional
        Take Ulist, grid and usepointmass from a previous fit (then none of them may be
        given); with ``fixg=True`` its pi is used as is. A MashResult stands for its
        ``fitted_g`` (with ``fixg=True`` its alpha must equal ``data.alpha``). The data's
        conditions are matched to the fit's by name (reordered when needed, results in the
        fit's order) and a mismatch is refused. A model R wrote, as :func:`~mashlib.read_rds`
        returns it (``saveRDS(mash(...))``, the protocol's ``list(mash_model, ...)`` or a bare
        ``fitted_g``), is accepted too (see :func:`mashlib.mash_from_r`).
    prior, nullweight : Dirichlet penalty (``nullbiased``: nullweight on the null).
    optmethod, control : optimiser (``mixSQP`` default) and its control dict.
    verbose : bool
        Print progress lines with timings as mashr.
    outputlevel : int
        1 = fit only; 2 = + posterior matrices; 3 = + PosteriorCov; 4 = + ``lm``.
    pi_thresh : float
        Components with ``pi <= pi_thresh`` are dropped from the posterior.
    A : array (Q, R), optional
        Report posteriors of ``A b``.
    output_lfdr : bool
        Keep ``lfdr`` in ``result``.
    posterior_samples : int
        Draw this many samples M from each effect's posterior (outputlevel >= 2):
        ``result["PosteriorSamples"]``, shape (J, Q, M) as R (see :func:`get_samples`,
        :func:`get_pairwise_sharing_from_samples`).  mashr needs ``algorithm.version = "R"``
        for this; here it is the same vectorised path.
    seed : int
        Seed of the draws (mashr's default 123); the global random state is not touched
        (mashr calls ``set.seed``).  See :func:`mashlib.model.samples.draw_posterior_samples`.

    Returns
    -------
    MashResult
    """
    if data.n_effects == 0:
        raise MashInputError("data: has 0 effects (rows); mash needs at least one. Check the "
                             "filter that built Bhat.")
    if isinstance(g, dict):        # a model R wrote (read_rds): its fitted_g, alpha checked with fixg
        g = _check_alpha(g, data) if fixg else _fitted_g_from_r(g)
    if g is not None:
        given = [n for n, v in (("Ulist", Ulist), ("grid", grid), ("normalizeU", normalizeU),
                                ("usepointmass", usepointmass)) if v is not None]
        if given:
            raise MashInputError(f"{given[0]}: cannot supply both g and {given[0]}.")
        if isinstance(g, MashResult):         # a previous fit: use its fitted_g
            g = _check_alpha(g, data) if fixg else g.fitted_g
        elif not isinstance(g, FittedG):
            raise MashInputError(f"g: must be a MashResult or its fitted_g (a FittedG), got "
                                 f"{type(g).__name__}.")
        data, A = align_to_model(g, data, A)
        Ulist, grid, usepointmass = g.Ulist, np.asarray(g.grid, float), g.usepointmass
    else:
        if fixg:
            raise MashInputError("fixg: cannot fix g if g is not supplied.")
        if Ulist is None:
            raise MashInputError("Ulist: must supply Ulist (or g from a previous mash fit).")
        usepointmass = True if usepointmass is None else bool(usepointmass)
        grid = autoselect_grid(data, gridmult) if grid is None else np.atleast_1d(
            np.asarray(grid, float))
        Ulist = check_Ulist(Ulist, data.n_conditions,
                            data.conditions if data.conditions_named else None)
        if normalizeU is None or normalizeU:
            Ulist = normalize_Ulist(Ulist)
    Ulist = check_Ulist(Ulist, data.n_conditions)
    J, R = data.Bhat.shape
    A = contrast_posterior_A(data.L, A)
    Aa = _A_array(A, R)
    xU = expand_cov(Ulist, grid, usepointmass)
    names = list(xU)
    P = len(xU)
    cols = None                                      # likelihood columns evaluated (None: all)
    if fixg:
        pi_s = np.asarray(g.pi, float)
        if pi_s.size != P:
            raise MashInputError(f"g: pi has {pi_s.size} entries but g expands to {P} components.")
        if outputlevel < 4:                          # only the columns with pi > 0 matter
            cols = needed_components(pi_s, usepointmass)
    t0 = time.perf_counter()
    say(log, verbose, f" - Computing {J} x {P} likelihood matrix.")
    lm = calc_relative_lik_matrix(data, xU if cols is None else {names[p]: xU[names[p]]
                                                                 for p in cols},
                                  memory_bytes=memory_bytes, grid=grid)
    say(log, verbose, f" - Likelihood calculations took {time.perf_counter() - t0:.2f} seconds.")
    if not fixg:
        say(log, verbose, f" - Fitting model with {P} mixture components.")
        t0 = time.perf_counter()
        pr = set_prior(P, prior, nullweight)
        pi_s = optimize_pi(lm["loglik_matrix"], pr, optmethod, control, log=True)
        vl, nl, al = _vlogliks(pi_s, lm, data.Shat_alpha, usepointmass)
        say(log, verbose, f" - Model fitting took {time.perf_counter() - t0:.2f} seconds.")
    else:
        pis = pi_s if cols is None else pi_s[cols]
        vl, nl, al = _vlogliks(pis, lm, data.Shat_alpha, usepointmass)
    keep = np.flatnonzero(pi_s > pi_thresh)
    kcol = keep if cols is None else np.searchsorted(cols, keep)   # keep is a subset of cols
    weights = compute_posterior_weights(pi_s[keep], lm["loglik_matrix"][:, kcol])
    result = {}
    if outputlevel > 1:
        say(log, verbose, " - Computing posterior matrices.")
        t0 = time.perf_counter()
        Ustack = np.stack([xU[names[p]] for p in keep])
        post = compute_posterior_matrices(data, Ustack, A=Aa, weights=weights,
                                          output_posterior_cov=outputlevel > 2,
                                          memory_bytes=memory_bytes)
        result = _result_frames(post, data, A)
        if not output_lfdr:
            result.pop("lfdr")
        if posterior_samples:
            result["PosteriorSamples"] = draw_posterior_samples(
                data, Ustack, pi_s[keep], posterior_samples, seed, A=Aa, memory_bytes=memory_bytes)
        say(log, verbose, f" - Computation allocated took {time.perf_counter() - t0:.2f} seconds.")
    conds = model_conditions(g) if g is not None else None
    if conds is None and data.conditions_named:
        conds = list(data.conditions)
    fitted_g = FittedG(pi=pi_s, Ulist=Ulist, grid=np.asarray(grid, float), usepointmass=usepointmass,
                       conditions=conds)
    pw = pd.DataFrame(weights, index=data.row_ids, columns=[names[p] for p in keep])
    return MashResult(result=result, loglik=float(vl.sum()), vloglik=vl, null_loglik=nl,
                      alt_loglik=al, fitted_g=fitted_g, posterior_weights=pw, alpha=data.alpha,
                      lm=lm if outputlevel == 4 else None, conditions=list(data.conditions),
                      row_ids=data.row_ids)


@single_blas_thread
def mash_compute_posterior_matrices(g, data: MashData, pi_thresh: float = 1e-10, A=None,
                                    output_posterior_cov: bool = False,
                                    memory_bytes: int = DEFAULT_MEMORY_BYTES, *,
                                    posterior_samples: int = 0, seed=123,
                                    max_memory=None, out=None, engine: Optional[str] = None,
                                    **stream_options):
    """Posterior matrices for (new) data under a fixed model (mashr ``mash_compute_posterior_matrices``).

    Parameters
    ----------
    g : MashResult or FittedG
        A MashResult's alpha must equal ``data.alpha`` (P23); with a bare FittedG the caller
        is responsible for using the same alpha.  A mash model R wrote (as
        :func:`~mashlib.read_rds` returns it) is accepted (its ``fitted_g``, alpha checked
        the same way; see :func:`mashlib.mash_from_r`).
    data : MashData
        Its conditions are matched to the model's by name: in another order, the columns
        (and V) are reordered to the model's order, the results come back in the model's
        order, and an INFO line is logged; names that differ are refused, listed. Without
        names on either side the columns are taken by position, as mashr.
    pi_thresh, A, output_posterior_cov, posterior_samples, seed : as :func:`mash`.
    max_memory, out, engine, **stream_options
        Not accepted here: chunked, on-disk or Dask posteriors have their own front door,
        :func:`mashlib.compute_posterior_streaming` (same numbers, returns a ``StreamResult``).
        Passing any of them raises an error that says so.

    Returns
    -------
    dict
        J x Q DataFrames ``PosteriorMean``, ``PosteriorSD``, ``lfdr``, ``NegativeProb``,
        ``lfsr``, ``PosteriorCov`` (J, Q, Q) when asked and ``PosteriorSamples`` (J, Q, M)
        with ``posterior_samples = M``.
    """
    given = [k for k, v in (("max_memory", max_memory), ("out", out), ("engine", engine)) if v is not None]
    if given or stream_options:
        raise MashInputError(
            f"mash_compute_posterior_matrices: {', '.join(given + sorted(stream_options))} are options of "
            f"the streaming posterior; call mashlib.compute_posterior_streaming(g, data, ...) instead "
            f"(same numbers, chunked under a memory budget, to disk or on Dask).")
    fg = _check_alpha(g, data)
    data, A = align_to_model(fg, data, A)
    Ulist = check_Ulist(fg.Ulist, data.n_conditions)
    xU = expand_cov(Ulist, fg.grid, fg.usepointmass)
    pi = np.asarray(fg.pi, float)
    if pi.size != len(xU):
        raise MashInputError(f"g: pi has {pi.size} entries but g expands to {len(xU)} components.")
    keep = np.flatnonzero(pi > pi_thresh)
    names = list(xU)
    Ustack = np.stack([xU[names[p]] for p in keep])
    A = contrast_posterior_A(data.L, A)
    Aa = _A_array(A, data.n_conditions)
    post = compute_posterior_matrices(data, Ustack, pi[keep], A=Aa,
                                      output_posterior_cov=output_posterior_cov,
                                      memory_bytes=memory_bytes)
    res = _result_frames(post, data, A)
    if posterior_samples:
        res["PosteriorSamples"] = draw_posterior_samples(data, Ustack, pi[keep], posterior_samples,
                                                         seed, A=Aa, memory_bytes=memory_bytes)
    return res


@single_blas_thread
def mash_compute_vloglik(g, data: MashData, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> np.ndarray:
    """Per-effect log-likelihood of ``data`` under a fitted model (mashr ``mash_compute_vloglik``).

    ``log(sum_p pi_p exp(L~_jp)) + lfactors_j - sum_r log Shat_alpha_jr``, evaluated on the
    components with ``pi_p > 0`` only (the others contribute nothing).
    """
    fg = _check_alpha(g, data)
    data, _ = align_to_model(fg, data)
    xU = expand_cov(check_Ulist(fg.Ulist, data.n_conditions), fg.grid, fg.usepointmass)
    pi = np.asarray(fg.pi, float)
    names = list(xU)
    if pi.size != len(names):
        raise MashInputError(f"g: pi has {pi.size} entries but g expands to {len(names)} components.")
    cols = np.flatnonzero(pi > 0)                    # zero weights contribute nothing
    lm = calc_relative_lik_matrix(data, {names[p]: xU[names[p]] for p in cols},
                                  memory_bytes=memory_bytes)
    return _vlogliks(pi[cols], lm, data.Shat_alpha, False)[0]


def mash_compute_loglik(g, data: MashData, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> float:
    """``sum(mash_compute_vloglik(g, data))``."""
    return float(mash_compute_vloglik(g, data, memory_bytes).sum())

