"""CorShrink: empirical-Bayes shrinkage of correlation matrices.

Implemented from the paper

    K. K. Dey and M. Stephens (2018), "CorShrink: Empirical Bayes shrinkage estimation
    of correlations, with applications", bioRxiv 368316,

and the description of CorShrink 0.1-6 in the porting map (section 2.8); no CorShrink
code was read. Each correlation :math:`r_{ij}` is Fisher-transformed,
:math:`\\hat z_{ij} = \\operatorname{atanh}(r_{ij})`, with approximate standard error
:math:`\\sigma_{ij}`, shrunk by adaptive shrinkage (:func:`mashlib.ash`: a unimodal
prior at 0 fitted to all :math:`\\hat z`), back-transformed with :math:`\\tanh` and
projected onto the nearest correlation matrix (:func:`mashlib.near_pd`).

The protocol's ``vhat_corshrink_xcondition`` is :func:`vhat_corshrink`:
``CorShrinkData(null_z, ash.control = list(mixcompdist = "halfuniform"), image = "null")$cor``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .._errors import MashInputError
from .nearpd import _null_z_matrix, near_pd

__all__ = ["corshrink_data", "corshrink_matrix", "vhat_corshrink", "ash_control_defaults",
           "fisher_z_se"]

_IMAGES = ("both", "original", "corshrink", "output", "null")


def ash_control_defaults(maxiter: int = 1000) -> dict:
    """CorShrink's ash settings (map 2.8 step 2), before the user's ``ash_control``.

    ``pointmass=True, mixcompdist="normal", nullweight=10, fixg=False, mode=0,
    optmethod="mixEM", prior="nullbiased", gridmult=sqrt(2), outputlevel=2, alpha=0,
    df=None`` and the SQUAREM control ``K=1, method=3, square=True, step.min0=1,
    step.max0=1, mstep=4, kr=1, objfn.inc=1, tol=1e-5, maxiter=maxiter, trace=False``.
    """
    return dict(pointmass=True, mixcompdist="normal", nullweight=10, fixg=False, mode=0,
                optmethod="mixEM", prior="nullbiased", gridmult=float(np.sqrt(2)),
                outputlevel=2, alpha=0, df=None,
                control=dict(K=1, method=3, square=True, step_min0=1, step_max0=1, mstep=4,
                             kr=1, objfn_inc=1, tol=1e-5, maxiter=int(maxiter), trace=False))


def _merge_control(user: Mapping | None, maxiter: int) -> dict:
    """R's ``modifyList(defaults, ash.control)`` (nested ``control`` merged key by key)."""
    ctrl = ash_control_defaults(maxiter)
    if user is None:
        return ctrl
    if not isinstance(user, Mapping):
        raise MashInputError(f"`ash_control` must be a dict of ash arguments, e.g. "
                             f"{{'mixcompdist': 'halfuniform'}}; got {type(user).__name__}.")
    for k, v in user.items():
        key = str(k).replace(".", "_")
        if key == "control" and isinstance(v, Mapping):
            ctrl["control"].update({str(a).replace(".", "_"): b for a, b in v.items()})
        else:
            ctrl[key] = v
    return ctrl


def fisher_z_se(n) -> np.ndarray:
    r"""Standard error of the Fisher z of a correlation from ``n`` samples (map 2.8 step 5).

    .. math:: \sigma(n) = \sqrt{\frac{1}{n-1} + \frac{2}{(n-1)^2}}

    (CorShrink's choice; close to the textbook :math:`1/\sqrt{n-3}` for large n, and what R's
    reference values require).
    """
    n = np.asarray(n, dtype=float)
    return np.sqrt(1.0 / (n - 1.0) + 2.0 / (n - 1.0) ** 2)


def _labels(cormat, R: int, name: str):
    if isinstance(cormat, pd.DataFrame):
        return [str(c) for c in cormat.columns]
    return [str(i + 1) for i in range(R)]


def _fisher_inputs(C: np.ndarray, nsamp, zscore_sd, thresh_up: float, thresh_down: float):
    """Vectorised off-diagonal pairs (column-major, both (i,j) and (j,i)) -> z-hat and se."""
    R = C.shape[0]
    off = ~np.eye(R, dtype=bool)
    # R's melt is column-major: entry (i, j) at position i + j R; take C.T row-major
    pos = off.T
    r = C.T[pos]
    r = np.clip(r, thresh_down, thresh_up)
    zhat = 0.5 * np.log((1.0 + r) / (1.0 - r))
    if zscore_sd is not None:
        sd = np.asarray(zscore_sd.to_numpy() if isinstance(zscore_sd, pd.DataFrame) else zscore_sd,
                        dtype=float)
        if sd.shape != (R, R):
            raise MashInputError(f"`zscore_sd` must be {R} x {R} like `cormat`; got {sd.shape}.")
        se = sd.T[pos].copy()
        se[se == 0] = 1e8
        return zhat, se, pos
    if np.ndim(nsamp) == 0:
        n = float(nsamp)
        if not n > 1:
            raise MashInputError(f"`nsamp` = {nsamp!r} must be > 1 (number of samples behind "
                                 "each correlation).")
        se = np.full(zhat.shape, fisher_z_se(n))
        return zhat, se, pos
    N = np.asarray(nsamp.to_numpy() if isinstance(nsamp, pd.DataFrame) else nsamp, dtype=float)
    if N.shape != (R, R):
        raise MashInputError(f"`nsamp` must be a number or an {R} x {R} matrix of pairwise "
                             f"sample sizes; got shape {N.shape}.")
    n = N.T[pos].copy()
    few = ~(n > 2)                     # pairs with <= 2 complete samples carry no information
    zhat = np.where(few, 0.0, zhat)
    n[few] = 1.00001
    return zhat, fisher_z_se(n), pos


def _ash_kwargs(ash_fn, ctrl: dict) -> dict:
    """Keep the settings :func:`mashlib.ash` accepts; unsupported ones must be defaults.

    ``df=None`` (normal likelihood) is ash's only behaviour, so it is dropped; a
    non-default value of an unsupported setting is an error rather than silently ignored.
    """
    import inspect  # noqa: PLC0415

    params = inspect.signature(ash_fn).parameters
    defaults = ash_control_defaults()
    out = {}
    for k, v in ctrl.items():
        if k in params:
            out[k] = v
        elif k in defaults and (v is None or v == defaults[k]):
            continue
        else:
            raise MashInputError(f"`ash_control`: setting {k!r} = {v!r} is not supported by "
                                 f"mashlib.ash; supported: {sorted(p for p in params if p not in ('betahat', 'sebetahat'))}.")
    return out


def _ash_posterior_mean(fit) -> np.ndarray:
    """Posterior means from an ash fit (object or dict)."""
    for getter in (lambda f: f.result["PosteriorMean"], lambda f: f["result"]["PosteriorMean"],
                   lambda f: f.posterior_mean, lambda f: f.posterior["mean"],
                   lambda f: f["PosteriorMean"]):
        try:
            pm = getter(fit)
        except (AttributeError, KeyError, TypeError, IndexError):
            continue
        if pm is not None:
            return np.asarray(pm, dtype=float).ravel()
    raise TypeError("cannot find the posterior means in the ash fit")  # pragma: no cover


def corshrink_matrix(cormat, nsamp=None, zscore_sd=None, thresh_up: float = 0.99,
                     thresh_down: float = -0.99, image: str = "null", tol: float = 1e-6,
                     dosym: bool = False, report_model: bool = False, maxiter: int = 1000,
                     ash_control: Mapping | None = None) -> dict:
    r"""Adaptive shrinkage of a correlation matrix (CorShrink ``CorShrinkMatrix``).

    For every ordered off-diagonal pair (both :math:`(i,j)` and :math:`(j,i)`, so each
    correlation enters the fit twice, :math:`R(R-1)` observations):

    1. clamp :math:`r_{ij}` to [``thresh_down``, ``thresh_up``]; missing -> 0;
    2. :math:`\hat z_{ij} = \tfrac12 \log\frac{1+r_{ij}}{1-r_{ij}}` with
       :math:`\sigma_{ij} = \sqrt{1/(n_{ij}-1) + 2/(n_{ij}-1)^2}` (:func:`fisher_z_se`;
       a pair with :math:`n_{ij} \le 2` gets :math:`\hat z = 0, n = 1.00001`), or the given
       ``zscore_sd`` (zeros -> 1e8);
    3. fit ash, :math:`\hat z_{ij} \sim N(z_{ij}, \sigma_{ij}^2)`,
       :math:`z_{ij} \sim g = \pi_0 \delta_0 + \sum_k \pi_k g_k` (unimodal at 0; mixEM with
       the nullbiased Dirichlet prior, SQUAREM tol 1e-5), and take the posterior mean
       :math:`\tilde z_{ij} = E[z_{ij} | \hat z]`;
    4. :math:`\tilde r_{ij} = \tanh \tilde z_{ij}`, unit diagonal (``cor_before_PD``);
    5. :math:`\mathrm{nearPD}(\tilde r, \text{corr}=\text{TRUE}, \text{doSym}=\text{TRUE},
       \text{conv.tol}=\texttt{tol})`, each row divided by its diagonal, symmetrised when
       ``dosym`` (``cor``).

    Parameters
    ----------
    cormat : array_like or pandas.DataFrame, shape (R, R)
        Sample correlation matrix (NaN -> 0).
    nsamp : float or array_like (R, R)
        Number of samples (scalar) or pairwise complete counts.
    zscore_sd : array_like (R, R), optional
        Standard errors of the Fisher z-scores (instead of ``nsamp``).
    thresh_up, thresh_down : float
        Clamp of the correlations before the transform.
    image : {"null", "both", "original", "corshrink", "output"}
        ``"null"`` draws nothing; otherwise a heatmap figure of the input and/or the
        shrunk matrix is returned under ``"figure"``.
    tol : float
        ``conv_tol`` of the final :func:`~mashlib.near_pd`.
    dosym : bool
        Symmetrise the output.
    report_model : bool
        Also return the ash fit (``"model"``).
    maxiter : int
        SQUAREM iteration limit.
    ash_control : dict, optional
        Overrides of :func:`ash_control_defaults` (the protocol uses
        ``{"mixcompdist": "halfuniform"}``).

    Returns
    -------
    dict
        ``"cor"`` and ``"cor_before_PD"`` (DataFrames labelled like ``cormat``; ``1..R``
        when unlabelled), ``"model"`` when ``report_model``, ``"figure"`` when drawn.

    Notes
    -----
    R's ``reshape2::dcast`` sorts numeric-looking condition names numerically while the
    output keeps the original labels (map P25), which mislabels the result when such
    names are not already in numeric order; here the labels always follow ``cormat``.
    """
    if image not in _IMAGES:
        raise MashInputError(f"`image` = {image!r}; allowed: {list(_IMAGES)}.")
    if nsamp is None and zscore_sd is None:
        raise MashInputError("corshrink_matrix needs `nsamp` (number of samples, scalar or "
                             "R x R) or `zscore_sd` (standard errors of the Fisher z-scores).")
    C = np.array(cormat.to_numpy() if isinstance(cormat, pd.DataFrame) else cormat,
                 dtype=float, copy=True)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 2:
        raise MashInputError(f"`cormat` must be a square correlation matrix with at least 2 "
                             f"rows; got shape {C.shape}.")
    R = C.shape[0]
    labels = _labels(cormat, R, "cormat")
    C[np.isnan(C)] = 0.0
    zhat, se, pos = _fisher_inputs(C, nsamp, zscore_sd, thresh_up, thresh_down)
    ctrl = _merge_control(ash_control, maxiter)
    try:
        from ..eb import ash  # noqa: PLC0415
    except ImportError as e:        # pragma: no cover - only while ash is being written
        raise ImportError(f"corshrink needs mashlib.ash (ash with mixEM): {e}") from e
    fit = ash(zhat, se, **_ash_kwargs(ash, ctrl))
    pm = _ash_posterior_mean(fit)
    before = np.eye(R)
    before.T[pos] = np.tanh(pm)
    res = near_pd(before, corr=True, do_sym=True, conv_tol=tol)
    out_m = np.asarray(res.mat, dtype=float)
    out_m = out_m / np.diag(out_m)[:, None]
    if dosym:
        out_m = (out_m + out_m.T) / 2.0
    out = {"cor_before_PD": pd.DataFrame(before, index=labels, columns=labels),
           "cor": pd.DataFrame(out_m, index=labels, columns=labels)}
    if report_model:
        out["model"] = fit
    if image != "null":
        out["figure"] = _image(C, out_m, labels, image)
    return out


def _image(C, S, labels, image):
    """Side-by-side heatmaps of the sample and / or shrunk correlations."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    from .._palette import prior_palette  # noqa: PLC0415

    mats = {"both": [("sample", C), ("CorShrink", S)], "original": [("sample", C)],
            "corshrink": [("CorShrink", S)], "output": [("CorShrink", S)]}[image]
    fig = Figure(figsize=(5 * len(mats), 4.5))
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    for ax, (title, M) in zip(axes, mats):
        im = ax.imshow(M, cmap=prior_palette(128), vmin=-1, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _pairwise(data: np.ndarray, method: str):
    """Pairwise-complete correlations and counts (R ``cor(use="pairwise.complete.obs")``)."""
    ok = np.isfinite(data)
    N = ok.T.astype(float) @ ok.astype(float)
    if ok.all():
        if method == "pearson":
            with np.errstate(invalid="ignore", divide="ignore"):
                C = np.corrcoef(data, rowvar=False)
        else:
            C = pd.DataFrame(data).corr(method=method).to_numpy()
    else:
        C = pd.DataFrame(np.where(ok, data, np.nan)).corr(method=method, min_periods=1).to_numpy()
    return np.atleast_2d(C), N


def corshrink_data(data, sd_boot: bool = False, type: str = "cor", cor_method: str = "pearson",
                   thresh_up: float = 0.99, thresh_down: float = -0.99, image: str = "null",
                   tol: float = 1e-6, dosym: bool = False, report_model: bool = False,
                   maxiter: int = 1000, ash_control: Mapping | None = None, nboot: int = 50,
                   seed=None) -> dict:
    r"""CorShrink from a data matrix (CorShrink ``CorShrinkData``).

    ``cormat = cor(data, use="pairwise.complete.obs", method=cor_method)`` and the pairwise
    complete counts :math:`n_{ij} = \sum_s 1[x_{si}, x_{sj} \text{ observed}]` (entries
    :math:`\le 2` set to 0, i.e. no information), then :func:`corshrink_matrix`. With
    ``type="pcor"`` the result is converted to partial correlations,
    :math:`\rho_{ij} = -P_{ij}/\sqrt{P_{ii}P_{jj}}`, :math:`P = C^{+}`.

    Parameters
    ----------
    data : array_like or pandas.DataFrame, shape (N, R)
        Samples in rows, variables (conditions) in columns; NaN allowed.
    sd_boot : bool
        Bootstrap standard errors of the Fisher z-scores (:func:`mashlib.vhat._corshrink_boot.bootcor_se`,
        ``nboot`` row resamples drawn with ``seed``; CorShrink's clamp to [0.001, 0.999] is kept)
        instead of the sample-size formula.
    nboot, seed
        Number of bootstrap resamples (50, as CorShrink) and the numpy seed (``sd_boot`` only).
    type : {"cor", "pcor"}
    cor_method : {"pearson", "spearman", "kendall"}
    thresh_up, thresh_down, image, tol, dosym, report_model, maxiter, ash_control
        As :func:`corshrink_matrix`.

    Returns
    -------
    dict
        As :func:`corshrink_matrix` (labelled by the columns of ``data``).
    """
    if type not in ("cor", "pcor"):
        raise MashInputError(f"`type` = {type!r}; allowed: 'cor', 'pcor'.")
    if cor_method not in ("pearson", "spearman", "kendall"):
        raise MashInputError(f"`cor_method` = {cor_method!r}; allowed: 'pearson', 'spearman', "
                             "'kendall'.")
    X, labels = _null_z_matrix(data, None, "data", allow_nan=True)
    if np.isinf(X).any():
        raise MashInputError("`data` has infinite values; replace them with NaN (missing) or "
                             "finite numbers.")
    C, N = _pairwise(X, cor_method)
    N[N <= 2] = 0.0
    Cdf = pd.DataFrame(C, index=labels, columns=labels)
    zsd = None
    if sd_boot:
        from ._corshrink_boot import bootcor_se

        zsd = bootcor_se(X, nboot=nboot, seed=seed, cor_method=cor_method)
        N = None
    out = corshrink_matrix(Cdf, nsamp=N, zscore_sd=zsd, thresh_up=thresh_up, thresh_down=thresh_down,
                           image=image, tol=tol, dosym=dosym, report_model=report_model,
                           maxiter=maxiter, ash_control=ash_control)
    if type == "pcor":
        P = np.linalg.pinv(out["cor"].to_numpy())
        d = np.sqrt(np.diag(P))
        pc = -P / np.outer(d, d)
        np.fill_diagonal(pc, 1.0)
        out["cor"] = pd.DataFrame(pc, index=labels, columns=labels)
    return out


def vhat_corshrink(null_z, conditions=None) -> pd.DataFrame:
    """Residual correlation ``vhat_corshrink_xcondition`` of the protocol (map 1.8).

    ``CorShrinkData(null_z, ash.control = list(mixcompdist = "halfuniform"),
    image = "null")$cor`` on the null-set z-scores (``null.b / null.s`` after NA -> 0 /
    1000), with no re-thresholding on :math:`|z|`.

    Parameters
    ----------
    null_z : array_like or pandas.DataFrame, shape (J, R)
    conditions : list of str, optional
        Condition names (default: the DataFrame's columns).

    Returns
    -------
    pandas.DataFrame
        R x R positive-definite correlation matrix; ``.attrs["n_null_rows"]`` is J.
    """
    Z, conditions = _null_z_matrix(null_z, conditions, "null_z", allow_nan=True)
    res = corshrink_data(pd.DataFrame(Z, columns=conditions),
                         ash_control={"mixcompdist": "halfuniform"}, image="null")
    V = res["cor"]
    V.attrs.update(n_null_rows=int(Z.shape[0]))
    return V
