"""Empirical Bayes matrix factorisation: a port of flashier 1.0.60 (BSD-3).

The EBMF model (Wang & Stephens 2021) writes an n x p matrix as
:math:`Y = LF^\\top + E`, :math:`e_{ij} \\sim N(0, 1/\\tau_{ij})`, with each column of
L and of F drawn from a prior estimated by empirical Bayes (an ebnm family),
and fits it by maximising the evidence lower bound (ELBO) of a mean-field
variational approximation.

Main entry point :func:`flash`; composable operations :func:`flash_init`,
:func:`flash_greedy`, :func:`flash_backfit`, :func:`flash_nullcheck`,
:func:`flash_factors_remove`, :func:`flash_factors_fix`; initialisers
:func:`flash_greedy_init_default`, :func:`flash_greedy_init_softImpute`,
:func:`nonneg_init`; :func:`ldf`; plots in :mod:`mashlib.ebmf.plots`.
"""
from __future__ import annotations

from .backfit import flash_backfit
from .fit import FlashFit, ldf
from .greedy import flash_greedy
from .init import flash_greedy_init_default, flash_greedy_init_softImpute, nonneg_init
from .plots import plot_bar, plot_heatmap, plot_intervals, plot_scree
from .ops import flash, flash_factors_fix, flash_factors_remove, flash_init, flash_nullcheck

__all__ = [
    "flash",
    "flash_init",
    "flash_greedy",
    "flash_backfit",
    "flash_nullcheck",
    "flash_factors_remove",
    "flash_factors_fix",
    "flash_greedy_init_default",
    "flash_greedy_init_softImpute",
    "nonneg_init",
    "FlashFit",
    "ldf",
    "plot_scree",
    "plot_bar",
    "plot_heatmap",
    "plot_intervals",
]
