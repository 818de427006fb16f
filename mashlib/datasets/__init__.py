"""Example data shipped with mashlib.

``gtex()`` is flashier's ``gtex`` data set (BSD-3, from Wang & Stephens 2021 /
Urbut et al. 2019): z-scores of the top eQTL of 1,000 genes in 44 GTEx tissues,
a subsample of the 16,069 x 44 matrix used in the mash and flash papers.
``gtex_colors()`` gives flashier's colour for each tissue.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["gtex", "gtex_colors"]


def _path(name):
    return resources.files(__name__).joinpath(name)


def gtex() -> pd.DataFrame:
    """The 1000 x 44 gtex z-score matrix (rows: eQTLs ``gene_chr_pos_ref_alt_b37``; columns: tissues)."""
    with resources.as_file(_path("gtex.csv")) as p:
        return pd.read_csv(p, index_col=0)


def gtex_colors() -> pd.Series:
    """Hex colour of each of the 44 tissues (index: tissue names, in the column order of :func:`gtex`)."""
    with resources.as_file(_path("gtex_colors.csv")) as p:
        df = pd.read_csv(p)
    return pd.Series(df["color"].to_numpy(), index=df["tissue"].to_numpy(), name="color")
