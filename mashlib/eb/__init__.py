"""Empirical Bayes primitives: mix-SQP, ash, the normal-means families (``ebnm``).

``mixsqp`` (``_mixsqp``, with its active-set QP in ``_qp``) solves the mixture-weight problem;
``mixopt`` holds ashr's mix-SQP / EM wrappers; ``mixdist`` the normal and uniform mixture
likelihoods and posteriors (``mixdist_t``: the Student-t likelihood and truncated-normal mixtures); ``ash`` and ``mash_1by1`` (``_ash``); ``ebnm`` is a sub-package with
one function per prior family.
"""
from . import ebnm
from ._ash import (AshResult, Mash1by1Result, NormalMix, UniMix, ash, autoselect_mixsd, compute_lfsr,
                   mash_1by1, qval_from_lfdr)
from .mixdist_t import TNormalMix
from ._mixsqp import (STATUS_CONVERGED, STATUS_DIDNOTCONVERGE, STATUS_DIDNOTRUN, MixSQPResult, mixobjective,
                      mixsqp, mixsqp_control_default)

__all__ = ["ebnm", "ash", "AshResult", "NormalMix", "UniMix", "TNormalMix", "compute_lfsr", "autoselect_mixsd",
           "qval_from_lfdr", "mash_1by1", "Mash1by1Result", "mixsqp", "MixSQPResult",
           "mixsqp_control_default", "mixobjective", "STATUS_CONVERGED", "STATUS_DIDNOTCONVERGE",
           "STATUS_DIDNOTRUN"]
