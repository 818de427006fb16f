"""The mixture prior: data-driven covariance components and the engines that refine them.

``flash`` (mashr's ``cov_flash`` on the EBMF port), ``ed`` (``extreme_deconvolution``, ``cov_ed``;
batched kernels in ``_ed_kernels``; TEEM for ``cov_ed(algorithm="teem")`` in ``_teem``), ``udr/``
(ultimate deconvolution), ``engines`` (the protocol's
``ed_bovy`` / ``ud`` / ``ud_unconstrained`` and ``mixture_prior``, ``read_prior``). The canonical,
PCA and empirical components are part of the model's vocabulary (:mod:`mashlib.model.covariances`).
"""
from ._teem import TeemFit
from .ed import EDFit, EDResult, bovy_wrapper, cov_ed, extreme_deconvolution, teem_wrapper
from .engines import (ENGINES, MixturePrior, ed_bovy, mixture_prior, prior_weights, read_prior, ud, ud_control, ud_unconstrained,
                      validate_components, validate_prior)
from .flash import cov_flash
from .udr import UdComponent, UdFit, ud_fit, ud_fit_control_default, ud_init

__all__ = ["EDResult", "EDFit", "extreme_deconvolution", "cov_ed", "bovy_wrapper", "teem_wrapper", "TeemFit", "ENGINES", "MixturePrior", "mixture_prior",
           "ed_bovy", "prior_weights", "ud", "ud_unconstrained", "ud_control", "validate_components",
           "validate_prior", "read_prior", "cov_flash", "UdComponent", "UdFit", "ud_init", "ud_fit",
           "ud_fit_control_default"]
