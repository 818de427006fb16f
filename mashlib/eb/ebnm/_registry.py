"""Where each ebnm function lives: family or helper name -> private module of ``mashlib.eb.ebnm``.

Used by the dispatcher (``_front.ebnm``) and by the methods on a fit (``_methods.predict``) to
import a family's module on first use, so that neither imports every family up front.
"""
from __future__ import annotations

import importlib

__all__ = ["MODULES", "lookup"]

#: function name -> module (relative to mashlib.eb.ebnm)
MODULES = {
    "ebnm_point_normal": "_parametric",
    "ebnm_point_laplace": "_parametric",
    "ebnm_point_exponential": "_parametric",
    "ebnm_normal": "_parametric",
    "ebnm_normal_scale_mixture": "_nonparametric",
    "ebnm_unimodal": "_ashfam",
    "ebnm_unimodal_symmetric": "_ashfam",
    "ebnm_unimodal_nonnegative": "_ashfam",
    "ebnm_unimodal_nonpositive": "_ashfam",
    "ebnm_ash": "_ashfam",
    "ebnm_horseshoe": "_horseshoe",
    "Horseshoe": "_horseshoe",
    "ebnm_generalized_binary": "_generalized_binary",
    "ebnm_npmle": "_npmle",
    "ebnm_scale_npmle": "_npmle",
    "ebnm_deconvolver": "_deconvolver",
    "ebnm_flat": "_flat",
    "ebnm_point_mass": "_flat",
    "ebnm_group": "_group",
    "ebnm_check_fn": "_methods",
}


def lookup(name: str):
    """The object ``name`` (e.g. ``"ebnm_npmle"``), importing its module on first use."""
    return getattr(importlib.import_module(f"mashlib.eb.ebnm.{MODULES[name]}"), name)
