"""mashlib: multivariate adaptive shrinkage (MASH) in Python.

The public names mirror R's mashr (snake_case), ashr/ebnm and flashier, so an R
user finds their way::

    import mashlib as ml
    data = ml.mash_set_data(Bhat, Shat)
    U = ml.cov_canonical(data)
    m = ml.mash(data, U)
    ml.get_lfsr(m)

Names are imported lazily (on first attribute access) so that ``import mashlib``
is fast and optional pieces load only when used.
"""
from __future__ import annotations

import importlib

from ._version import __version__

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "MashInputError": "_errors",
    "MashlibError": "_errors",
    # data
    "MashData": "model",
    "mash_set_data": "model",
    "mash_update_data": "model",
    "contrast_matrix": "model",
    # covariances
    "cov_canonical": "model",
    "cov_pca": "model",
    "cov_udi": "model",
    "cov_empirical": "model",
    "cov_from_factors": "model",
    "normalize_Ulist": "model",
    "expand_cov": "model",
    "scale_cov": "model",
    "check_covmat": "model",
    "cov_all_zeros": "model",
    "cov_flash": "prior",
    "cov_ed": "prior",
    "extreme_deconvolution": "prior",
    "ud_init": "prior",
    "ud_fit": "prior",
    # likelihood, fitting, posterior
    "calc_lik_matrix": "model",
    "calc_relative_lik_matrix": "model",
    "autoselect_grid": "model",
    "mash": "model",
    "FittedG": "model",
    "MashResult": "model",
    "mash_compute_posterior_matrices": "model",
    "posterior_chunk": "model",
    "compute_posterior_matrices": "model",
    "mash_compute_loglik": "model",
    "mash_compute_vloglik": "model",
    # fitted models to and from R
    "mash_from_r": "model",
    "posterior_to_r": "model",
    "mash_to_r": "model",
    "fitted_g_from_r": "model",
    # after the fit: a model on fewer conditions, contrasts of the posterior (pecotmr)
    "update_mash_model_cov": "model",
    "mash_posterior_contrast": "model",
    "contrast_design": "model",
    # summaries
    "get_loglik": "model",
    "get_pm": "model",
    "get_psd": "model",
    "get_lfsr": "model",
    "get_lfdr": "model",
    "get_np": "model",
    "get_log10bf": "model",
    "get_estimated_pi": "model",
    "get_significant_results": "model",
    "get_n_significant_conditions": "model",
    "get_pairwise_sharing": "model",
    "get_pairwise_sharing_from_samples": "stream",
    "get_samples": "model",
    "get_posterior_condition_wise_summary": "model",
    # streaming / out-of-core / Dask posterior
    "compute_posterior_streaming": "stream",
    "save_npy_store": "stream",
    "open_store": "stream",
    "calc_relative_lik_matrix_dask": "stream",
    # residual correlation
    "estimate_null_correlation_simple": "vhat",
    "mash_estimate_corr_em": "vhat",
    "vhat_identity": "vhat",
    "vhat_simple": "vhat",
    "vhat_mle": "vhat",
    # nearPD, CorShrink, prior engines, plots
    "near_pd": "vhat",
    "vhat_simple_specific": "vhat",
    "corshrink_data": "vhat",
    "corshrink_matrix": "vhat",
    "vhat_corshrink": "vhat",
    "mixture_prior": "prior",
    "MixturePrior": "prior",
    "ed_bovy": "prior",
    "ud": "prior",
    "ud_unconstrained": "prior",
    "read_prior": "prior",
    "plot_U": "plots",
    "plot_sharing": "plots",
    "plot_component": "plots",
    "mash_plot_meta": "plots",
    # EB primitives
    "mixsqp": "eb",
    "ash": "eb",
    "mash_1by1": "eb",
    "compute_lfsr": "eb",
    "AshResult": "eb",
    "TNormalMix": "eb",
    "MixSQPResult": "eb",
    "ebnm": "eb.ebnm",
    "ebnm_point_normal": "eb.ebnm",
    "ebnm_point_laplace": "eb.ebnm",
    "ebnm_point_exponential": "eb.ebnm",
    "ebnm_normal": "eb.ebnm",
    "ebnm_normal_scale_mixture": "eb.ebnm",
    "ebnm_unimodal": "eb.ebnm",
    "ebnm_unimodal_symmetric": "eb.ebnm",
    "ebnm_unimodal_nonnegative": "eb.ebnm",
    "ebnm_unimodal_nonpositive": "eb.ebnm",
    "ebnm_ash": "eb.ebnm",
    "EbnmResult": "eb.ebnm",
    "ebnm_horseshoe": "eb.ebnm",
    "ebnm_generalized_binary": "eb.ebnm",
    "ebnm_npmle": "eb.ebnm",
    "ebnm_scale_npmle": "eb.ebnm",
    "ebnm_deconvolver": "eb.ebnm",
    "ebnm_flat": "eb.ebnm",
    "ebnm_point_mass": "eb.ebnm",
    "ebnm_group": "eb.ebnm",
    "ebnm_check_fn": "eb.ebnm",
    "Horseshoe": "eb.ebnm",
    "NormalMix": "eb.ebnm",
    "UniMix": "eb.ebnm",
    "flash": "ebmf",
    "flash_init": "ebmf",
    "flash_greedy": "ebmf",
    "flash_backfit": "ebmf",
    "flash_nullcheck": "ebmf",
    "flash_factors_remove": "ebmf",
    "flash_factors_fix": "ebmf",
    "flash_greedy_init_default": "ebmf",
    "flash_greedy_init_softImpute": "ebmf",
    "nonneg_init": "ebmf",
    "ldf": "ebmf",
    "FlashFit": "ebmf",
    "flash_set_verbose": "ebmf",
    "flash_set_conv_crit": "ebmf",
    "flash_set_timeout": "ebmf",
    "flash_clear_timeout": "ebmf",
    "flash_conv_crit_elbo_diff": "ebmf",
    "flash_conv_crit_max_chg": "ebmf",
    "flash_conv_crit_max_chg_L": "ebmf",
    "flash_conv_crit_max_chg_F": "ebmf",
    "flash_verbose_elbo": "ebmf",
    "flash_verbose_elbo_diff": "ebmf",
    "flash_verbose_max_chg": "ebmf",
    "flash_verbose_max_chg_L": "ebmf",
    "flash_verbose_max_chg_F": "ebmf",
    "flash_factors_init": "ebmf",
    "flash_factors_reorder": "ebmf",
    "flash_factors_set_to_zero": "ebmf",
    "flash_factors_unfix": "ebmf",
    "flash_add_intercept": "ebmf",
    "flash_update_data": "ebmf",
    "flash_greedy_init_irlba": "ebmf",
    "flash_ebnm": "ebmf",
    "flash_plot_scree": "ebmf",
    "flash_plot_bar": "ebmf",
    "flash_plot_heatmap": "ebmf",
    "flash_plot_histogram": "ebmf",
    "flash_plot_scatter": "ebmf",
    "flash_plot_structure": "ebmf",
    # io
    "read_rds": "io",
    "write_rds": "io",
    "read_mashr_input": "io",
    "MashrInput": "io",
    "simulate_protocol_example": "protocol.simulate",
    "simple_sims": "model",
    "simple_sims2": "model",
    "sim_contrast1": "model",
    "sim_contrast2": "model",
}

#: the sub-packages, one per family, reachable as ``mashlib.<wing>`` (imported on first use)
WINGS = ("io", "eb", "ebmf", "model", "stream", "prior", "vhat", "plots", "protocol", "datasets")

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in WINGS:
        return importlib.import_module(f"{__name__}.{name}")
    try:
        modname = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'mashlib' has no attribute {name!r}") from None
    module = importlib.import_module(f"{__name__}.{modname}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
