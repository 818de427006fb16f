r"""Empirical Bayes normal means: ``ebnm`` and one function per prior family (port of ebnm 1.1-42).

Model (Willwerscheid, Carbonetto & Stephens):

.. math::

    x_i \mid \theta_i \sim N(\theta_i, s_i^2), \qquad \theta_i \sim g \in \mathcal G, \qquad
    \hat g = \arg\max_{g \in \mathcal G} \sum_i \log \int N(x_i; \theta, s_i^2)\, g(d\theta).

Families (``prior_family``):

========================  =================================================  ====================
name                      :math:`\mathcal G`                                   module
========================  =================================================  ====================
point_normal              :math:`\pi_0\delta_\mu + (1-\pi_0)N(\mu,\sigma^2)`     ebnm_parametric
point_laplace             :math:`\pi_0\delta_\mu + (1-\pi_0)\mathrm{Laplace}`    ebnm_parametric
point_exponential         :math:`\pi_0\delta_\mu + (1-\pi_0)\mathrm{Exp}`        ebnm_parametric
normal                    :math:`N(\mu,\sigma^2)`                                ebnm_parametric
normal_scale_mixture      :math:`\sum_k\pi_k N(\mu,\sigma_k^2)` (fixed grid)     ebnm_nonparametric
unimodal                  unimodal about the mode (half-uniform mixture)        ebnm_ashfam
unimodal_symmetric        symmetric unimodal (uniform mixture)                  ebnm_ashfam
unimodal_nonnegative      unimodal, support :math:`[\mu,\infty)`                 ebnm_ashfam
unimodal_nonpositive      unimodal, support :math:`(-\infty,\mu]`                ebnm_ashfam
ash                       ashr's ``ash`` with ebnm's grid                        ebnm_ashfam
horseshoe                 :math:`N(0, \text{scale}^2\lambda^2)`, :math:`\lambda\sim C^+(0,1)`  _horseshoe
generalized_binary        :math:`\pi_0\delta_0 + (1-\pi_0)N_{[0,\infty)}(\mu, (r\mu)^2)`  _generalized_binary
npmle                     all distributions (point masses on a grid)            _npmle
deconvolver               Efron's spline exponential family on a grid (z)       _deconvolver
flat                      :math:`N(0, \infty)` (no shrinkage)                   _flat
point_mass                :math:`\delta_\mu` (total shrinkage)                  _flat
========================  =================================================  ====================

``ebnm_group`` (``_group``) fits one prior per group of observations; ``ebnm_check_fn``
(``_methods``) checks a custom ebnm function for flash; ``_methods`` also holds the methods on a
fit (``confint``, ``quantile``, ``predict``, ``logLik``, ``nobs``, ``summary``, ``plot``).

Every function returns an :class:`~mashlib.eb.ebnm._core.EbnmResult`.
"""
from __future__ import annotations


from . import _core, _registry
from ..._errors import MashInputError
from ..._validation import check_choice
from ._core import (  # noqa: F401  (re-exported)
    DEFAULT_OUTPUT,
    FLASH_OUTPUT,
    OUTPUT_ALL,
    OUTPUT_NAMES,
    EbnmResult,
    NormalMix,
    PointExponential,
    PointLaplace,
    PointNormal,
    UniMix,
)
from ._parametric import ebnm_normal, ebnm_point_exponential, ebnm_point_laplace, ebnm_point_normal

__all__ = [
    "ebnm",
    "ebnm_point_normal",
    "ebnm_point_laplace",
    "ebnm_point_exponential",
    "ebnm_normal",
    "ebnm_normal_scale_mixture",
    "ebnm_unimodal",
    "ebnm_unimodal_symmetric",
    "ebnm_unimodal_nonnegative",
    "ebnm_unimodal_nonpositive",
    "ebnm_ash",
    "ebnm_horseshoe",
    "ebnm_generalized_binary",
    "ebnm_npmle",
    "ebnm_scale_npmle",
    "ebnm_deconvolver",
    "ebnm_flat",
    "ebnm_point_mass",
    "ebnm_group",
    "ebnm_check_fn",
    "Horseshoe",
    # the result and prior classes and output sets of ebnm_core
    *(n for n in _core.__all__ if n != "OUTPUT_NAMES"),
    "PRIOR_FAMILIES",
]

PRIOR_FAMILIES = (
    "point_normal",
    "point_laplace",
    "point_exponential",
    "normal",
    "normal_scale_mixture",
    "unimodal",
    "unimodal_symmetric",
    "unimodal_nonnegative",
    "unimodal_nonpositive",
    "ash",
    "horseshoe",
    "generalized_binary",
    "npmle",
    "deconvolver",
    "flat",
    "point_mass",
)


def __getattr__(name):
    # every family but the parametric ones lives in its own module (imported on first use)
    if name in _registry.MODULES:
        return _registry.lookup(name)
    raise AttributeError(f"module 'mashlib.eb.ebnm._front' has no attribute {name!r}")


def ebnm(x, s=1, prior_family="point_normal", mode=0, scale="estimate", g_init=None, fix_g=False,
         output=DEFAULT_OUTPUT, optmethod=None, control=None, **kwargs):
    r"""Solve the EBNM problem for the prior family ``prior_family``.

    Parameters
    ----------
    x, s : array_like
        Observations and their standard errors (see :func:`ebnm_point_normal`).
    prior_family : str
        One of :data:`PRIOR_FAMILIES` (one prior per group of observations: ``ebnm_group``).
    mode, scale, g_init, fix_g, output, optmethod, control
        Passed to ``ebnm_<prior_family>``.
    **kwargs
        Extra arguments for the ash-based families (e.g. ``gridmult``).

    Returns
    -------
    EbnmResult
    """
    check_choice(prior_family, PRIOR_FAMILIES, "ebnm: prior_family", "prior family")
    if kwargs and prior_family not in ("normal_scale_mixture", "unimodal", "unimodal_symmetric",
                                       "unimodal_nonnegative", "unimodal_nonpositive", "ash", "deconvolver"):
        raise MashInputError(f"ebnm: extra arguments {sorted(kwargs)} are only accepted by the ash-based "
                             f"families, not by prior_family={prior_family!r}; remove them")
    if prior_family == "generalized_binary":
        # ebnm's defaults for this family: the mode is estimated (0 is not a valid mode of the
        # truncated normal) and scale is the fixed sd/mode ratio 0.1
        mode = "estimate" if (not isinstance(mode, str) and mode == 0) else mode
        scale = 0.1 if (isinstance(scale, str) and scale == "estimate") else scale
    fn = globals().get(f"ebnm_{prior_family}") or __getattr__(f"ebnm_{prior_family}")
    return fn(x, s, mode=mode, scale=scale, g_init=g_init, fix_g=fix_g, output=output, optmethod=optmethod,
              control=control, **kwargs)

