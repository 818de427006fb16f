r"""``ebnm_group``: one prior per group of observations (ebnm 1.1).

The observations are split by ``group``; group :math:`h` gets its own prior
:math:`\hat g_h = \arg\max_{g \in \mathcal G} \sum_{i: group_i = h} \log\int N(x_i; \theta, s_i^2)\, g(d\theta)`
from the same family :math:`\mathcal G`, fitted independently. The log-likelihood is the sum over
groups; the posterior rows are returned in the original order and ``fitted_g`` is a dict
group -> prior (in order of first appearance).
"""
from __future__ import annotations

import numpy as np

from ..._errors import MashInputError
from ..._validation import check_choice
from ._core import DEFAULT_OUTPUT, EbnmResult, check_output, check_xs

__all__ = ["ebnm_group"]


def ebnm_group(x, s=1, group=None, prior_family="point_normal", mode=0, scale="estimate", g_init=None,
               fix_g=False, output=DEFAULT_OUTPUT, optmethod=None, control=None, **kwargs):
    r"""Solve one EBNM problem per group, each with its own prior from ``prior_family``.

    Parameters
    ----------
    x, s : array_like
        Observations and standard errors.
    group : array_like
        One label per observation (any hashable values).
    prior_family : str
        Any family of :func:`mashlib.eb.ebnm.ebnm` except "group".
    mode, scale : optional
        Passed to every group's fit; a dict label -> value gives one per group.
    g_init : dict, optional
        Label -> prior (e.g. the ``fitted_g`` of an earlier ``ebnm_group`` fit).
    fix_g : bool
    output, optmethod, control, **kwargs
        Passed to the family function.

    Returns
    -------
    EbnmResult
        ``fitted_g`` is a dict label -> prior; ``log_likelihood`` the sum over groups;
        ``posterior`` in the order of ``x``.
    """
    from ._front import PRIOR_FAMILIES, ebnm

    fname = "ebnm_group"
    want = check_output(output)
    x, s = check_xs(x, s, fname)
    if group is None:
        raise MashInputError(f"{fname}: group is required (one label per observation)")
    grp = np.asarray(group, dtype=object).ravel()
    if grp.size != x.size:
        raise MashInputError(f"{fname}: group has length {grp.size} but x has length {x.size}; "
                             "give one label per observation")
    check_choice(prior_family, [f for f in PRIOR_FAMILIES if f != "group"], f"{fname}: prior_family",
                 "prior family")
    if g_init is not None and not isinstance(g_init, dict):
        raise MashInputError(f"{fname}: g_init must be a dict group -> prior (the fitted_g of an ebnm_group fit)")
    if fix_g and g_init is None:
        raise MashInputError(f"{fname}: fix_g=True needs g_init (a dict group -> prior)")
    labels = list(dict.fromkeys(grp.tolist()))
    if g_init is not None:
        missing = [lab for lab in labels if lab not in g_init]
        if missing:
            raise MashInputError(f"{fname}: g_init has no prior for group(s) {missing[:5]}")

    def per(v, lab):
        return v[lab] if isinstance(v, dict) else v

    sub_out = set(want) | {"fitted_g", "log_likelihood"}
    fits, idxs = {}, {}
    for lab in labels:  # one fit per group (few groups)
        idx = np.flatnonzero(grp == lab)
        idxs[lab] = idx
        fits[lab] = ebnm(x[idx], s[idx], prior_family=prior_family, mode=per(mode, lab), scale=per(scale, lab),
                         g_init=None if g_init is None else g_init[lab], fix_g=fix_g, output=tuple(sub_out),
                         optmethod=optmethod, control=control, **kwargs)
    result = EbnmResult(prior_family=prior_family)
    if "log_likelihood" in want:
        lls = [f.log_likelihood for f in fits.values()]
        result.log_likelihood = None if any(v is None for v in lls) else float(np.sum(lls))
    first = next(iter(fits.values()))
    if first.posterior_arrays:
        post = {}
        for k in first.posterior_arrays:
            if all(k in f.posterior_arrays for f in fits.values()):
                col = np.empty(x.size)
                for lab, f in fits.items():
                    col[idxs[lab]] = f.posterior_arrays[k]
                post[k] = col
        result.posterior_arrays = post
    if "fitted_g" in want or "posterior_sampler" in want:
        result.fitted_g = {lab: f.fitted_g for lab, f in fits.items()}

        def sampler(nsamp, rng):
            out = np.empty((int(nsamp), x.size))
            for lab, f in fits.items():
                out[:, idxs[lab]] = f._sampler(nsamp, rng)
            return out

        result._sampler = sampler
    if "data" in want:
        import pandas as pd

        result.data = pd.DataFrame({"x": x, "s": s, "group": grp})
    return result
