"""The MASH model: data, covariance lists, likelihood, fit and posterior, and the ``get_*`` accessors.

mashr's vocabulary, one module each: ``data`` (``mash_set_data``, ``MashData``), ``covariances``
(the ``cov_*`` constructors and the Ulist helpers), ``likelihood`` (``calc_lik_matrix``),
``contrast`` (``contrast_matrix`` and the common-baseline data of ``mash_update_data(ref=)``),
``fit`` (``mash``, ``FittedG``, ``MashResult``), ``posterior`` (posterior moments, lfsr),
``samples`` (posterior samples: ``get_samples``, the one sampler), ``summaries`` (``get_pm``,
``get_lfsr``, ``get_pairwise_sharing`` ...), ``condition_wise``
(``get_posterior_condition_wise_summary``), ``simulations`` (mashr's ``simple_sims`` ...).
"""
from .condition_wise import get_posterior_condition_wise_summary
from .contrast import contrast_matrix
from .covariances import (check_covmat, check_Ulist, cov_all_zeros, cov_canonical, cov_empirical, cov_from_factors,
                          cov_pca, cov_udi, expand_cov, normalize_cov, normalize_Ulist, scale_cov)
from .data import MashData, check_positive_definite, mash_set_data, mash_update_data
from .fit import (FittedG, MashResult, autoselect_grid, mash, mash_compute_loglik, mash_compute_posterior_matrices,
                  mash_compute_vloglik, optimize_pi, set_prior)
from .likelihood import (DEFAULT_MEMORY_BYTES, ComponentBasis, calc_lik_matrix, calc_relative_lik_matrix,
                         component_loglik, group_spectra, whiten_rows)
from .posterior import compute_lfsr, compute_posterior_matrices, compute_posterior_weights, posterior_chunk
from .condition_subset import update_mash_model_cov
from .posterior_contrast import contrast_design, contrast_grouping, contrast_summary, mash_posterior_contrast
from .r_model import fitted_g_from_r, is_r_model, mash_from_r, mash_to_r, posterior_to_r
from .samples import draw_posterior_samples, get_samples, sample_posterior_chunk
from .simulations import sim_contrast1, sim_contrast2, simple_sims, simple_sims2
from .summaries import (get_estimated_pi, get_lfdr, get_lfsr, get_log10bf, get_loglik, get_n_significant_conditions,
                        get_np, get_pairwise_sharing, get_pm, get_psd, get_significant_results)

__all__ = [
    "MashData", "mash_set_data", "mash_update_data", "check_positive_definite", "contrast_matrix",
    "cov_canonical", "cov_pca", "cov_udi", "cov_empirical", "cov_from_factors", "normalize_Ulist",
    "normalize_cov", "scale_cov", "expand_cov", "check_covmat", "check_Ulist",
    "calc_lik_matrix", "calc_relative_lik_matrix", "ComponentBasis", "whiten_rows", "group_spectra",
    "component_loglik", "DEFAULT_MEMORY_BYTES",
    "posterior_chunk", "compute_posterior_matrices", "compute_posterior_weights", "compute_lfsr",
    "autoselect_grid", "FittedG", "MashResult", "mash", "mash_compute_posterior_matrices",
    "mash_compute_vloglik", "mash_compute_loglik", "set_prior", "optimize_pi",
    "get_loglik", "get_pm", "get_psd", "get_lfsr", "get_lfdr", "get_np", "get_log10bf", "get_estimated_pi",
    "get_significant_results", "get_n_significant_conditions", "get_pairwise_sharing",
    "get_samples", "draw_posterior_samples", "sample_posterior_chunk",
    "get_posterior_condition_wise_summary", "cov_all_zeros",
    "simple_sims", "simple_sims2", "sim_contrast1", "sim_contrast2",
    "mash_from_r", "mash_to_r", "fitted_g_from_r", "posterior_to_r", "is_r_model",
    "update_mash_model_cov", "mash_posterior_contrast", "contrast_design", "contrast_grouping", "contrast_summary",
]
