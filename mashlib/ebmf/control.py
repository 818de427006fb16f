r"""flashier's fit controls: convergence criteria, verbose output columns and timeouts.

Convergence criteria (``flash_set_conv_crit(fit, fn, tol)``) and verbose columns
(``flash_set_verbose(fit, verbose, fns, colnames, colwidths)``) are functions
``fn(curr, prev, k)`` of the current and previous state (a :class:`~mashlib.ebmf.FlashFit`
in a backfit, a single factor in a greedy step) and the factor index ``k`` (None when every
factor was updated at once):

``flash_conv_crit_elbo_diff``
    :math:`\mathrm{ELBO}_{\text{curr}} - \mathrm{ELBO}_{\text{prev}}` (``inf`` while either is
    not yet a valid ELBO); the default.
``flash_conv_crit_max_chg``, ``_max_chg_L``, ``_max_chg_F``
    :math:`\max |\tilde x_{\text{curr}} - \tilde x_{\text{prev}}|` over the posterior means of the
    loadings and factors (``_L``: loadings only, ``_F``: factors only) after scaling every column
    to unit :math:`L^2` norm (zero columns are left as they are).

The ``flash_verbose_*`` functions are the corresponding table columns (``flash_verbose_elbo``
prints the ELBO with two decimals). ``flash_set_timeout(fit, tim, units)`` makes the greedy and
backfit loops stop once the deadline has passed, keeping the fit reached so far (with a
warning, or a message at verbose > 0), and ``flash_clear_timeout`` removes it.
"""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from .._errors import MashInputError
from .._log import say

__all__ = [
    "flash_set_verbose", "flash_set_conv_crit", "flash_set_timeout", "flash_clear_timeout",
    "flash_conv_crit_elbo_diff", "flash_conv_crit_max_chg", "flash_conv_crit_max_chg_L",
    "flash_conv_crit_max_chg_F", "flash_verbose_elbo", "flash_verbose_elbo_diff", "flash_verbose_max_chg",
    "flash_verbose_max_chg_L", "flash_verbose_max_chg_F", "is_timed_out", "update_info",
]

log = logging.getLogger("mashlib")


# ------------------------------------------------------------------ state accessors (fit or factor)
def _obj_valid(f) -> bool:
    v = getattr(f, "is_valid", True)
    return bool(np.all(v))


def _EF(f, k, n):
    """Posterior means of mode ``n`` (None: both) of factor ``k`` (None: all) as a list of 2-d arrays."""
    modes = (0, 1) if n is None else (n,)
    out = []
    for m in modes:
        X = np.asarray(f.EF[m], float)
        if X.ndim == 1:
            X = X[:, None]
        elif k is not None:
            X = X[:, [k]]
        out.append(X)
    return out


def _l2_stack(mats):
    cols = []
    for X in mats:
        nrm = np.sqrt(np.sum(X * X, axis=0))
        nrm[nrm == 0] = 1.0
        cols.append(X / nrm)
    return np.vstack(cols)


def _max_abs_chg(curr, prev, k, n):
    a = _l2_stack(_EF(curr, k, n))
    b = _l2_stack(_EF(prev, k, n))
    if a.shape != b.shape:
        return np.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# ------------------------------------------------------------------ convergence criteria
def flash_conv_crit_elbo_diff(curr, prev, k=None):
    """Increase in the ELBO (``inf`` while the previous or current ELBO is not valid)."""
    if not _obj_valid(prev) or not _obj_valid(curr):
        return np.inf
    return float(curr.obj - prev.obj)


def flash_conv_crit_max_chg(curr, prev, k=None):
    """Largest absolute change in the L2-normalised loadings and factors."""
    return _max_abs_chg(curr, prev, k, None)


def flash_conv_crit_max_chg_L(curr, prev, k=None):
    """Largest absolute change in the L2-normalised loadings."""
    return _max_abs_chg(curr, prev, k, 0)


def flash_conv_crit_max_chg_F(curr, prev, k=None):
    """Largest absolute change in the L2-normalised factors."""
    return _max_abs_chg(curr, prev, k, 1)


# ------------------------------------------------------------------ verbose columns
def flash_verbose_elbo(curr, prev, k=None):
    """The current ELBO, formatted with two decimals ("NA" while not valid)."""
    return "NA" if not _obj_valid(curr) else f"{curr.obj:.2f}"


def flash_verbose_elbo_diff(curr, prev, k=None):
    """ELBO difference (NaN when infinite)."""
    d = flash_conv_crit_elbo_diff(curr, prev, k)
    return np.nan if np.isinf(d) else d


flash_verbose_max_chg = flash_conv_crit_max_chg
flash_verbose_max_chg_L = flash_conv_crit_max_chg_L
flash_verbose_max_chg_F = flash_conv_crit_max_chg_F

_DEFAULT_COLS = ((flash_verbose_elbo_diff, flash_verbose_max_chg), ("ELBO Diff", "LF Max Chg"), (12, 12))
_TAB_COLS = ((flash_verbose_elbo, flash_verbose_elbo_diff, flash_verbose_max_chg),
             ("ELBO", "ELBO.diff", "LF.max.chg"), (14, 12, 12))


def _check_fit(fit):
    # duck-typed: fit.py imports this module, so this one does not import fit.py
    if not all(hasattr(fit, a) for a in ("EF", "EF2", "tau", "conv_tol", "copy")):
        raise MashInputError(f"fit: expected a FlashFit from flash_init() or flash(); got {type(fit).__name__}.")


def flash_set_verbose(fit, verbose=1, fns=None, colnames=None, colwidths=None):
    """Set the verbosity and the columns of the per-iteration table (flashier's ``flash_set_verbose``).

    Parameters
    ----------
    fit : FlashFit
    verbose : int
        0 silent, 1 announcements, 2 + objective after each factor, 3 + a table row per
        iteration, -1 a tab-delimited table (header printed now).
    fns, colnames, colwidths : sequences of equal length, optional
        Table columns: functions ``fn(curr, prev, k)`` (e.g. :func:`flash_verbose_elbo_diff`), their
        headers and widths. Default: ELBO difference and max change (level 3), or ELBO, ELBO
        difference and max change (level -1). Giving ``fns`` without ``verbose`` selects level 3.

    Returns
    -------
    FlashFit
        A copy with the new settings.
    """
    _check_fit(fit)
    fns = list(fns or [])
    colnames = list(colnames or [])
    colwidths = list(colwidths or [])
    if not (len(fns) == len(colnames) == len(colwidths)):
        raise MashInputError("flash_set_verbose: fns, colnames and colwidths must all have the same length "
                             f"(got {len(fns)}, {len(colnames)}, {len(colwidths)}).")
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or not -1 <= int(verbose) <= 3:
        raise MashInputError(f"flash_set_verbose: verbose={verbose!r} must be an integer in -1..3.")
    if any(not callable(f) for f in fns):
        raise MashInputError("flash_set_verbose: every entry of fns must be a function fn(curr, prev, k).")
    lvl = int(verbose)
    if not fns:
        fns, colnames, colwidths = (list(v) for v in (_TAB_COLS if lvl == -1 else _DEFAULT_COLS))
    new = fit.copy()
    new.verbose = lvl
    new.verbose_fns, new.verbose_colnames, new.verbose_colwidths = fns, colnames, [int(w) for w in colwidths]
    if lvl == -1:
        say(log, True, "Type\tFactor\tIter" + "".join("\t" + c for c in colnames))
    return new


def flash_set_conv_crit(fit, fn=None, tol=None):
    """Set the convergence criterion and tolerance (flashier's ``flash_set_conv_crit``).

    Parameters
    ----------
    fit : FlashFit
    fn : callable, optional
        ``fn(curr, prev, k)``, e.g. :func:`flash_conv_crit_max_chg`; default: keep the current one.
    tol : float
        Iterations stop once the criterion is at most ``tol``.
    """
    _check_fit(fit)
    if fn is not None and not callable(fn):
        raise MashInputError("flash_set_conv_crit: fn must be a function fn(curr, prev, k), e.g. "
                             "flash_conv_crit_max_chg.")
    if tol is None or isinstance(tol, bool):
        raise MashInputError("flash_set_conv_crit: tol is required (a number; inf allowed).")
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise MashInputError(f"flash_set_conv_crit: tol={tol!r} must be a number.") from None
    if np.isnan(tol):
        raise MashInputError("flash_set_conv_crit: tol must not be NaN.")
    new = fit.copy()
    if fn is not None:
        new.conv_crit_fn = fn
    new.conv_tol = tol
    return new


_UNITS = {"secs": 1.0, "mins": 60.0, "hours": 3600.0, "days": 86400.0, "weeks": 604800.0}


def flash_set_timeout(fit, tim, units="hours"):
    """Stop greedy and backfit loops ``tim`` ``units`` from now, keeping the fit reached so far.

    Parameters
    ----------
    fit : FlashFit
    tim : float
        Amount of time (positive).
    units : {"hours", "secs", "mins", "days", "weeks"}
    """
    _check_fit(fit)
    if units not in _UNITS:
        raise MashInputError(f"flash_set_timeout: units={units!r} is not one of {list(_UNITS)}.")
    try:
        tim = float(tim)
    except (TypeError, ValueError):
        raise MashInputError(f"flash_set_timeout: tim={tim!r} must be a number.") from None
    if not np.isfinite(tim):
        raise MashInputError(f"flash_set_timeout: tim={tim!r} must be finite.")
    new = fit.copy()
    now = time.monotonic()
    new.timeout = now + tim * _UNITS[units]
    new.timeout_set = now
    new.flags.pop("timeout_reached", None)
    return new


def flash_clear_timeout(fit):
    """Remove a timeout set by :func:`flash_set_timeout`."""
    _check_fit(fit)
    new = fit.copy()
    new.timeout = None
    new.timeout_set = None
    new.flags.pop("timeout_reached", None)
    return new


def is_timed_out(fit) -> bool:
    """Whether the fit's timeout has passed."""
    t = getattr(fit, "timeout", None)
    return t is not None and time.monotonic() > t


def report_timeout(fit, lvl, where=None):
    """Flag the fit and warn (verbose 0) or print (verbose > 0) that the timeout was reached."""
    elapsed = time.monotonic() - (fit.timeout_set or time.monotonic())
    fit.flags["timeout_reached"] = True
    if where is not None:
        msg = f"Fit timed out. {where} skipped."
    else:
        msg = f"Fit timed out after {elapsed:.3g} secs; the fit reached so far is returned."
    if lvl > 0:
        say(log, True, f"  --{msg}")
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------ per-iteration information
def update_info(fit, curr, prev, k):
    """Values of the verbose columns and, last, the convergence criterion."""
    crit_fn = getattr(fit, "conv_crit_fn", None) or flash_conv_crit_elbo_diff
    fns = list(getattr(fit, "verbose_fns", []) or [])
    vals = [f(curr, prev, k) for f in fns]
    crit = next((v for f, v in zip(fns, vals) if f is crit_fn), None)
    if crit is None:
        crit = crit_fn(curr, prev, k)
    return vals, float(crit)


def print_header(lvl, fit, backfit):
    if lvl > 2:
        s = f"{'Iteration':>13}" + (f"{'Factor':>8}" if backfit else "")
        s += "".join(f"{c:>{w}}" for c, w in zip(fit.verbose_colnames, fit.verbose_colwidths))
        say(log, True, s)


def _fmt(v):
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        v = float(v)
        if np.isfinite(v) and round(v) == v:
            return f"{int(v)}"
        return f"{v:.2e}"
    return str(v)


def print_entry(lvl, fit, it, vals, k, backfit):
    if lvl > 2:
        s = f"{it:>13d}" + (f"{str(k):>8}" if backfit else "")
        s += "".join(f"{_fmt(v):>{w}}" for v, w in zip(vals, fit.verbose_colwidths))
        say(log, True, s)
    elif lvl == -1:
        say(log, True, ("backfit" if backfit else "greedy") + f"\t{k}\t{it}" + "".join(f"\t{v}" for v in vals))


class Snapshot:
    """The parts of a fit that the criteria read (posterior means, ELBO, validity), copied."""

    def __init__(self, fit):
        self.EF = [np.array(e, copy=True) for e in fit.EF]
        self.obj = float(fit.obj)
        self.is_valid = np.array(fit.is_valid, copy=True)
