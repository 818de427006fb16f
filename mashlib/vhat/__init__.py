"""The residual correlation Vhat: identity, simple, mle, corshrink and simple_specific estimators.

``estimate`` (``vhat_identity``, ``vhat_simple``, ``vhat_mle``, ``estimate_null_correlation_simple``,
``mash_estimate_corr_em``), ``nearpd`` (``near_pd``, ``vhat_simple_specific``), ``corshrink``
(CorShrink's adaptive shrinkage of correlations, ``vhat_corshrink``).
"""
from .corshrink import ash_control_defaults, corshrink_data, corshrink_matrix, fisher_z_se, vhat_corshrink
from .estimate import (E_V, cov2cor, estimate_null_correlation_simple, mash_estimate_corr_em, vhat_identity,
                       vhat_mle, vhat_simple)
from .nearpd import NearPDResult, near_pd, vhat_simple_specific

__all__ = ["estimate_null_correlation_simple", "mash_estimate_corr_em", "E_V", "vhat_identity", "vhat_simple",
           "vhat_mle", "cov2cor", "NearPDResult", "near_pd", "vhat_simple_specific", "corshrink_data",
           "corshrink_matrix", "vhat_corshrink", "ash_control_defaults", "fisher_z_se"]
