"""A fitted mash prior restricted to a subset of its conditions (pecotmr ``updateMashModelCov``).

A unit (gene, region) that lacks some of the model's conditions, or from which conditions
are excluded, gets its posterior under the model restricted to the kept conditions
:math:`K`.  Two rules are offered:

``"marginal"`` (default)
    The exact marginal of the prior on :math:`b_K`: if
    :math:`b \\sim \\pi_0\\delta_0 + \\sum_{k,l}\\pi_{kl} N(0, \\omega_l^2 U_k)` then
    :math:`b_K \\sim \\pi_0\\delta_0 + \\sum_{k,l}\\pi_{kl} N(0, \\omega_l^2 U_k[K,K])`: every
    matrix keeps its rows/columns :math:`K`, every weight is kept.  A singleton of a dropped
    condition becomes a zero matrix, i.e. its weight joins the null's, as it should (such an
    effect is zero on :math:`K`).  The posterior of :math:`b_K` given :math:`\\hat b_K` is
    then exactly what the full model says about those conditions when the others are not
    observed.
``"pecotmr"``
    pecotmr's ``updateMashModelCov`` (used by xqtl-protocol's ``mash_posterior.R``), for
    reproducing its numbers: the components named after a dropped condition (``c`` or
    ``ED_c``) are removed; a component named after a kept condition is rebuilt as the
    singleton at its new position; ``identity`` becomes the singleton of the **first** kept
    condition (R's quirk, not the identity); other matrices are subset by name when they
    carry dimnames and to their **leading** ``|K| x |K|`` block otherwise; every weight whose
    name contains a dropped condition's name (plain substring match) is removed, and the
    weights are not renormalised (mash normalises the posterior weights).  A name that is a
    substring of unrelated component names (``"A"`` in ``"ED_PCA_1"``) therefore removes
    weights of components that are kept, and the model no longer matches its ``Ulist``:
    that is refused with a message.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from .._errors import MashInputError
from .fit import FittedG

__all__ = ["update_mash_model_cov", "SUBSET_METHODS"]

SUBSET_METHODS = ("marginal", "pecotmr")


def _keep_index(conditions: Sequence[str], keep: Sequence[str]) -> np.ndarray:
    pos = {c: i for i, c in enumerate(conditions)}
    unknown = [c for c in keep if c not in pos]
    if unknown:
        raise MashInputError(f"keep: {unknown} are not conditions of the model ({list(conditions)})")
    if not keep:
        raise MashInputError("keep: no condition left; the model needs at least one")
    return np.asarray([pos[c] for c in keep], dtype=np.intp)


def update_mash_model_cov(g: FittedG, conditions: Sequence[str], keep: Sequence[str],
                          method: str = "marginal", labelled: Optional[Iterable[str]] = None) -> FittedG:
    """The fitted prior ``g`` restricted to the conditions ``keep`` (see the module docstring).

    Parameters
    ----------
    g : FittedG
        The model's prior (``pi``, ``Ulist``, ``grid``, ``usepointmass``).
    conditions : sequence of str
        The model's conditions, in the order of its matrices.
    keep : sequence of str
        The conditions to keep, in the order wanted (a subset of ``conditions``).
    method : {"marginal", "pecotmr"}
    labelled : iterable of str, optional
        ``"pecotmr"`` only: the ``Ulist`` names whose R matrices carry dimnames (they are
        subset by name; the others positionally).

    Returns
    -------
    FittedG
        With ``conditions = keep``; ``g`` itself when ``keep`` equals ``conditions``.

    Raises
    ------
    MashInputError
        Unknown method or condition, nothing kept, or (``"pecotmr"``) weights that no longer
        match the components.
    """
    if method not in SUBSET_METHODS:
        raise MashInputError(f"method: {method!r} is not one of {', '.join(SUBSET_METHODS)}")
    conditions = [str(c) for c in conditions]
    keep = [str(c) for c in keep]
    idx = _keep_index(conditions, keep)
    if keep == conditions:
        return g
    if method == "marginal":
        Ulist = {k: np.asarray(U, dtype=float)[np.ix_(idx, idx)] for k, U in g.Ulist.items()}
        return FittedG(pi=np.asarray(g.pi, dtype=float).copy(), Ulist=Ulist,
                       grid=np.asarray(g.grid, dtype=float).copy(), usepointmass=g.usepointmass,
                       conditions=list(keep))
    return _pecotmr(g, conditions, keep, idx, set(labelled or ()))


def _pecotmr(g: FittedG, conditions, keep, idx, labelled) -> FittedG:
    unwanted = [c for c in conditions if c not in keep]
    n = len(keep)
    Ulist = {}
    for d, U in g.Ulist.items():
        if d in unwanted or d in [f"ED_{u}" for u in unwanted]:
            continue
        U = np.asarray(U, dtype=float)
        if d in keep:
            M = np.zeros((n, n))
            M[keep.index(d), keep.index(d)] = 1.0
        elif d == "identity":
            M = np.zeros((n, n))
            M[0, 0] = 1.0
        elif d in labelled:
            M = U[np.ix_(idx, idx)]
        else:
            M = U[:n, :n]
        Ulist[d] = M
    names = g.component_names()
    keep_pi = [i for i, nm in enumerate(names) if not any(u in nm for u in unwanted)]
    out = FittedG(pi=np.asarray(g.pi, dtype=float)[keep_pi], Ulist=Ulist,
                  grid=np.asarray(g.grid, dtype=float).copy(), usepointmass=g.usepointmass,
                  conditions=list(keep))
    expect = out.component_names()
    kept_names = [names[i] for i in keep_pi]
    if kept_names != expect:
        extra = [nm for nm in kept_names if nm not in expect] or [nm for nm in expect if nm not in kept_names]
        raise MashInputError(
            f"pecotmr subset: dropping {unwanted} removes mixture weights by substring match and no "
            f"longer matches the components (e.g. {extra[:3]}); use the 'marginal' rule")
    return out
