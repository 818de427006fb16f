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
:func:`nonneg_init`, :func:`flash_greedy_init_irlba`; :func:`ldf`; plots in :mod:`mashlib.ebmf.plots`
and, under flashier's names, :mod:`mashlib.ebmf.plots_flashier`. Controls (:mod:`.control`):
:func:`flash_set_verbose`, :func:`flash_set_conv_crit`, :func:`flash_set_timeout`; factor
operations (:mod:`.factors`): :func:`flash_factors_init`, :func:`flash_factors_reorder`,
:func:`flash_factors_set_to_zero`, :func:`flash_factors_unfix`, :func:`flash_add_intercept`,
:func:`flash_update_data`, :func:`flash_ebnm`.
"""
from __future__ import annotations

from .backfit import flash_backfit
from .control import (flash_clear_timeout, flash_conv_crit_elbo_diff, flash_conv_crit_max_chg,
                      flash_conv_crit_max_chg_F, flash_conv_crit_max_chg_L, flash_set_conv_crit, flash_set_timeout,
                      flash_set_verbose, flash_verbose_elbo, flash_verbose_elbo_diff, flash_verbose_max_chg,
                      flash_verbose_max_chg_F, flash_verbose_max_chg_L)
from .factors import (flash_add_intercept, flash_ebnm, flash_factors_init, flash_factors_reorder,
                      flash_factors_set_to_zero, flash_factors_unfix, flash_greedy_init_irlba, flash_update_data)
from .fit import FlashFit, ldf
from .greedy import flash_greedy
from .init import flash_greedy_init_default, flash_greedy_init_softImpute, nonneg_init
from .plots import plot_bar, plot_heatmap, plot_intervals, plot_scree
from .ops import flash, flash_factors_fix, flash_factors_remove, flash_init, flash_nullcheck
from .plots_flashier import (flash_plot_bar, flash_plot_heatmap, flash_plot_histogram, flash_plot_scatter,
                             flash_plot_scree, flash_plot_structure)

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
    # controls (control.py), factor operations (factors.py), flashier-named plots (plots_flashier.py)
    "flash_set_verbose", "flash_set_conv_crit", "flash_set_timeout", "flash_clear_timeout",
    "flash_conv_crit_elbo_diff", "flash_conv_crit_max_chg", "flash_conv_crit_max_chg_L", "flash_conv_crit_max_chg_F",
    "flash_verbose_elbo", "flash_verbose_elbo_diff", "flash_verbose_max_chg", "flash_verbose_max_chg_L",
    "flash_verbose_max_chg_F", "flash_factors_init", "flash_factors_reorder", "flash_factors_set_to_zero",
    "flash_factors_unfix", "flash_add_intercept", "flash_update_data", "flash_greedy_init_irlba", "flash_ebnm",
    "flash_plot_scree", "flash_plot_bar", "flash_plot_heatmap", "flash_plot_histogram", "flash_plot_scatter",
    "flash_plot_structure",
]
