"""Contrasts of mash posterior means between conditions (pecotmr ``mashPosteriorContrast``).

For effect (variant) :math:`j` with posterior mean :math:`m_j` and posterior covariance
:math:`\\Sigma_j` over the conditions, and the conditions :math:`T_j` it was *tested* in
(the original estimate is non-zero; NaN counts as untested), pecotmr's
``fitMashContrast`` builds a design matrix :math:`D` (rows :math:`T_j`, one column per
contrast) and reports, per contrast :math:`c`,

.. math::  \\hat\\delta_c = D_{\\cdot c}^\\top m_{j,T},\\qquad
           \\mathrm{se}_c = \\sqrt{D_{\\cdot c}^\\top \\Sigma_{j,TT} D_{\\cdot c}},\\qquad
           p_c = 2\\Phi(-|\\hat\\delta_c / \\mathrm{se}_c|).

With :math:`n = |T_j|` and a grouping :math:`g(r) \\in \\{0, 1, 2, \\dots\\}` of the
conditions (0 = on its own; conditions sharing a positive code are replicate datasets
of one cell type), the columns are

* **deviation** ``<c>_deviation`` for each tested :math:`c` (when :math:`n > 2`):
  :math:`D_{rc} = 1` for :math:`r = c`, :math:`-1/(n-1)` otherwise, i.e. condition
  :math:`c` minus the mean of the others; when :math:`c` is in a group :math:`G`
  (:math:`g(c) > 0`), every member of :math:`G` gets :math:`1/|G|` instead (the group
  mean stands for :math:`c`; the others keep :math:`-1/(n-1)`, so such a column does not
  sum to zero, as in pecotmr);
* **pairwise** ``<a>_vs_<b>`` for every pair :math:`a < b` in column order (the only
  column when :math:`n = 2`): :math:`+1` on :math:`a`, :math:`-1` on :math:`b`; when the
  two are in different groups and one of them is in a positive group :math:`G`, its
  :math:`\\pm 1` is spread as :math:`\\pm 1/|G|` over every member of :math:`G`
  (pairs within one group keep :math:`\\pm 1`, comparing the replicates).

Effects tested in fewer than two conditions are dropped.  The table has a ``feature_id``
column (the posterior's row name) and ``mean_contrast_*``, ``se_contrast_*``,
``p_contrast_*`` columns, ordered as pecotmr's ``dplyr::select``: means (deviation then
pairwise), SEs, p-values; a contrast an effect lacks (a condition it was not tested in)
is NaN.  Computation is vectorised over effects sharing the same tested set.
"""
from __future__ import annotations

import itertools
import re
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .._errors import MashInputError

__all__ = ["contrast_design", "mash_posterior_contrast", "contrast_grouping", "read_grouping_recipe",
           "contrast_summary", "TIBBLE_CLASS"]

#: the R class of the contrast table (a tibble), set in ``DataFrame.attrs["r_class"]``
TIBBLE_CLASS = ["tbl_df", "tbl", "data.frame"]

_ORDER = ("mean_contrast.*deviation", "mean_contrast.*_vs_", "se_contrast.*deviation",
          "se_contrast.*_vs_", "p_contrast.*deviation", "p_contrast.*_vs_")


def _strip(name: str) -> str:
    return str(name).replace("BETA_", "")


def contrast_design(tested: Sequence[str], grouping: Optional[Mapping[str, int]] = None) -> pd.DataFrame:
    """pecotmr's contrast design over the ``tested`` conditions (see the module docstring).

    Parameters
    ----------
    tested : sequence of str
        The conditions, in column order (at least two).
    grouping : mapping condition -> int, optional
        Group codes (0 = on its own); conditions not in it count as 0.

    Returns
    -------
    DataFrame
        Rows = ``tested``, columns = contrast names (``<c>_deviation`` ..., ``<a>_vs_<b>`` ...).
    """
    tested = [str(t) for t in tested]
    n = len(tested)
    if n < 2:
        raise MashInputError(f"tested: a contrast needs at least two conditions, got {tested}")
    gr = np.array([int((grouping or {}).get(t, 0) or 0) for t in tested])
    if n == 2:
        return pd.DataFrame([[1.0], [-1.0]], index=tested, columns=[f"{tested[0]}_vs_{tested[1]}"])
    same = gr[:, None] == gr[None, :]
    size = same.sum(axis=0)                     # group size of column j's condition
    dev = np.where(same & (gr[:, None] > 0), (n - 1) / size[None, :],
                   np.where(np.eye(n, dtype=bool), n - 1.0, -1.0)) / (n - 1)
    pairs = list(itertools.combinations(range(n), 2))
    pw = np.zeros((n, len(pairs)))
    for c, (a, b) in enumerate(pairs):
        col = np.zeros(n)
        col[a], col[b] = 1.0, -1.0
        adj = col.copy()
        if gr[a] != gr[b] and (gr[a] > 0 or gr[b] > 0):
            for end in (a, b):
                if gr[end] > 0:
                    members = gr == gr[end]
                    adj[members] = col[end] / members.sum()
        pw[:, c] = adj
    cols = [f"{t}_deviation" for t in tested] + [f"{tested[a]}_vs_{tested[b]}" for a, b in pairs]
    return pd.DataFrame(np.hstack([dev, pw]), index=tested, columns=cols)


def _cov_array(posterior_cov, J: int, Q: int, conds: list[str]) -> np.ndarray:
    values = getattr(posterior_cov, "values", posterior_cov)
    dimnames = getattr(posterior_cov, "dimnames", None)
    arr = np.asarray(values, dtype=float)
    if arr.shape == (Q, Q, J) and (dimnames is not None or arr.shape != (J, Q, Q)):
        if dimnames is not None and dimnames[0] is not None and [str(c) for c in dimnames[0]] != conds:
            pos = {str(c): i for i, c in enumerate(dimnames[0])}
            missing = [c for c in conds if c not in pos]
            if missing:
                raise MashInputError(f"posterior_cov: conditions {missing} of the posterior mean are not in "
                                     "its dimnames")
            ix = np.asarray([pos[c] for c in conds])
            arr = arr[np.ix_(ix, ix, np.arange(J))]
        return np.moveaxis(arr, -1, 0)
    if arr.shape == (J, Q, Q):
        return arr
    raise MashInputError(f"posterior_cov: shape {arr.shape} fits neither R's {Q} x {Q} x {J} nor ({J}, {Q}, {Q}); "
                         "it must be the PosteriorCov of the same posterior")


def mash_posterior_contrast(posterior_mean, posterior_cov, orig_mean,
                            grouping: Optional[Mapping[str, int]] = None) -> pd.DataFrame:
    """Deviation and pairwise contrasts of every effect's posterior (pecotmr ``mashPosteriorContrast``).

    Parameters
    ----------
    posterior_mean : DataFrame (J, Q)
        ``PosteriorMean`` (rows = effects, columns = conditions).
    posterior_cov : RArray (Q, Q, J), ndarray (Q, Q, J) or (J, Q, Q)
        ``PosteriorCov`` of the same posterior (R's layout as read from RDS, or mashlib's).
    orig_mean : DataFrame (J, >= Q)
        The original estimates (e.g. ``bhat``), aligned to the posterior's columns by name
        and to its rows by position (pass it reindexed to the posterior's rows); a zero or
        NaN cell marks a condition the effect was not tested in.
    grouping : mapping condition -> int, optional
        Group codes (see :func:`contrast_grouping`); default all 0.

    Returns
    -------
    DataFrame
        ``feature_id`` then the ``mean_/se_/p_contrast_*`` columns (module docstring);
        ``attrs["r_class"]`` marks it as a tibble for :func:`mashlib.io.write_rds`.
        Empty (no columns) when no effect was tested in two conditions.
    """
    if not isinstance(posterior_mean, pd.DataFrame):
        raise MashInputError("posterior_mean: expected a DataFrame with the conditions as columns")
    conds = [str(c) for c in posterior_mean.columns]
    J, Q = posterior_mean.shape
    PM = posterior_mean.to_numpy(dtype=float)
    S = _cov_array(posterior_cov, J, Q, conds)
    orig = orig_mean if isinstance(orig_mean, pd.DataFrame) else pd.DataFrame(np.asarray(orig_mean), columns=conds)
    ocols = [str(c) for c in orig.columns]
    missing = [c for c in conds if c not in ocols]
    if missing:
        raise MashInputError(f"orig_mean: lacks conditions {missing} of the posterior; it must hold the "
                             "original estimates of the same conditions")
    if orig.shape[0] != J:
        raise MashInputError(f"orig_mean: has {orig.shape[0]} rows but the posterior has {J}; pass the "
                             "original estimates of the same effects")
    O = orig.set_axis(ocols, axis=1)[conds].to_numpy(dtype=float)
    tested = np.isfinite(O) & (O != 0)
    names = [_strip(c) for c in conds]
    fid = [str(i) for i in posterior_mean.index] if not isinstance(posterior_mean.index, pd.RangeIndex) \
        else [str(i + 1) for i in range(J)]
    rows = np.flatnonzero(tested.sum(axis=1) >= 2)
    if rows.size == 0:
        out = pd.DataFrame()
        out.attrs["r_class"] = list(TIBBLE_CLASS)
        return out
    patterns, first, inverse = np.unique(tested[rows], axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    columns: dict[str, np.ndarray] = {}
    for p in np.argsort(first):                 # patterns in order of first appearance (bind_rows)
        mask = patterns[p]
        sel = rows[inverse == p]
        t = np.flatnonzero(mask)
        design = contrast_design([names[i] for i in t], grouping)
        D, cnames = design.to_numpy(), design.columns
        m = PM[np.ix_(sel, t)] @ D
        var = np.empty((sel.size, D.shape[1]))
        step = max(1, (16 << 20) // (8 * D.size))      # ~16 MB blocks of S_j D
        for a in range(0, sel.size, step):
            St = S[sel[a:a + step]][:, t][:, :, t]
            var[a:a + step] = np.einsum("nic,ic->nc", St @ D, D)   # diag(D' S_j D), batched matmul
        with np.errstate(invalid="ignore", divide="ignore"):
            se = np.sqrt(var)
            pv = 2.0 * ndtr(-np.abs(m / se))
        for c, cn in enumerate(cnames):
            for pre, vals in (("mean_contrast_", m), ("se_contrast_", se), ("p_contrast_", pv)):
                key = pre + cn
                if key not in columns:
                    columns[key] = np.full(J, np.nan)
                columns[key][sel] = vals[:, c]
    order, seen = [], set()
    for pat in _ORDER:
        rx = re.compile(pat, re.IGNORECASE)
        for k in columns:
            if k not in seen and rx.search(k):
                order.append(k)
                seen.add(k)
    out = pd.DataFrame({"feature_id": [fid[i] for i in rows]})
    out = pd.concat([out, pd.DataFrame({k: columns[k][rows] for k in order})], axis=1)
    out.attrs["r_class"] = list(TIBBLE_CLASS)
    return out


def contrast_grouping(conditions: Sequence[str], groups: Sequence[Sequence[str]],
                      cells: Optional[Sequence[str]] = None) -> Optional[dict]:
    """The grouping vector of ``mash_posterior_contrast.R``: 0 for every condition of ``cells``
    (default ``conditions``), ``i`` for the members of the i-th group (1-based).

    Returns None when no group is given (every condition on its own).

    Raises
    ------
    MashInputError
        A group names a condition that is not in ``cells``/``conditions`` (R ignores it
        silently), or a condition is in two groups.
    """
    cells = [str(c) for c in (cells if cells else conditions)]
    groups = [[str(x).strip() for x in g if str(x).strip()] for g in groups]
    groups = [g for g in groups if g]
    if not groups:
        return None
    out = {c: 0 for c in cells}
    for i, g in enumerate(groups, start=1):
        unknown = [c for c in g if c not in out]
        if unknown:
            raise MashInputError(f"group {i} ({','.join(g)}): {unknown} are not conditions "
                                 f"({', '.join(cells)}); check the spelling")
        twice = [c for c in g if out[c] not in (0, i)]
        if twice:
            raise MashInputError(f"group {i}: {twice} are already in group {out[twice[0]]}; a condition "
                                 "belongs to one group")
        for c in g:
            out[c] = i
    return out


def read_grouping_recipe(path) -> list[list[str]]:
    """A grouping recipe file: one group per line, conditions separated by commas
    (blank lines and ``#`` comments skipped)."""
    from pathlib import Path
    p = Path(path)
    if not p.is_file():
        raise MashInputError(f"--grouping-recipe {p}: file not found")
    out = []
    for line in p.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append([x.strip() for x in line.split(",") if x.strip()])
    return out


def contrast_summary(tables: Sequence[pd.DataFrame], cells: Sequence[str], p_cutoff: float = 1e-5) -> pd.DataFrame:
    """Significance of the pairwise contrasts over many units (``mash_posterior_contrast_summary.R``).

    For each pair ``a_vs_b`` of ``cells`` (in ``cells`` order, as R's ``combn``) and each
    table holding the exact column ``p_contrast_a_vs_b``, its non-NaN p-values add to
    ``n_snp``, those below ``p_cutoff`` to ``n_sig_snp``; the table counts in
    ``n_all_feature`` and, when any is significant, in ``n_sig_feature``.

    Returns
    -------
    DataFrame
        Rows ``n_sig_snp``, ``n_snp``, ``n_sig_feature``, ``n_all_feature``; columns the pairs.
    """
    cells = [str(c) for c in cells]
    if len(cells) < 2:
        raise MashInputError(f"cells: need at least two conditions to summarise pairwise contrasts, got {cells}")
    pairs = [f"{a}_vs_{b}" for a, b in itertools.combinations(cells, 2)]
    S = np.zeros((4, len(pairs)))
    for tab in tables:
        for c, pair in enumerate(pairs):
            col = f"p_contrast_{pair}"
            if col not in tab.columns:
                continue
            pv = pd.to_numeric(tab[col], errors="coerce").to_numpy(dtype=float)
            pv = pv[~np.isnan(pv)]
            if pv.size == 0:
                continue
            nsig = int((pv < p_cutoff).sum())
            S[:, c] += (nsig, pv.size, nsig > 0, 1)
    return pd.DataFrame(S, index=["n_sig_snp", "n_snp", "n_sig_feature", "n_all_feature"], columns=pairs)
