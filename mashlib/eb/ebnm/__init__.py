"""Empirical Bayes normal means: ``ebnm`` and one ``ebnm_<family>`` function per prior family.

``from mashlib.eb import ebnm`` gives this family namespace (``ebnm.ebnm_point_normal``,
``ebnm.ebnm(x, s, prior_family=...)``); ``mashlib.ebnm`` is the function. The modules inside
are private: ``_core`` (result and prior classes), ``_parametric``/``_pfamilies*`` (point-normal,
point-Laplace, point-exponential, normal), ``_nonparametric`` (scale mixtures of normals),
``_ashfam`` (the unimodal / ash families), ``_grids``, ``_unimix``, and ``_front`` (the dispatcher).
"""
from ._ashfam import (ebnm_ash, ebnm_unimodal, ebnm_unimodal_nonnegative, ebnm_unimodal_nonpositive,
                      ebnm_unimodal_symmetric)
from ._front import *  # noqa: F401,F403  (the families and result classes, listed in _front.__all__)
from ._front import PRIOR_FAMILIES, __all__, ebnm
from ._nonparametric import ebnm_normal_scale_mixture
