"""The protocol's colour scale (used by plots and by CorShrink's figure)."""
from __future__ import annotations

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, to_rgb

__all__ = ["RDYLBU7", "prior_palette"]

#: RColorBrewer RdYlBu with 7 classes (reversed below, as the protocol script does).
RDYLBU7 = ["#D73027", "#FC8D59", "#FEE090", "#FFFFBF", "#E0F3F8", "#91BFDB", "#4575B4"]


def prior_palette(n: int = 128) -> LinearSegmentedColormap:
    """R's ``colorRampPalette(rev(RdYlBu7))(n)`` as a matplotlib colormap on [-1, 1].

    ``colorRampPalette`` interpolates linearly in RGB between the 7 anchor colours, at
    ``n`` equally spaced points; values outside the limits are drawn grey (ggplot's
    ``na.value = "grey50"``).

    Parameters
    ----------
    n : int
        Number of interpolated colours (128 in the protocol).

    Returns
    -------
    matplotlib.colors.LinearSegmentedColormap
    """
    anchors = np.array([to_rgb(c) for c in RDYLBU7[::-1]])
    t = np.linspace(0.0, 1.0, anchors.shape[0])
    s = np.linspace(0.0, 1.0, n)
    cols = np.column_stack([np.interp(s, t, anchors[:, k]) for k in range(3)])
    cmap = LinearSegmentedColormap.from_list("rev_RdYlBu7_%d" % n, cols, N=n)
    return cmap.with_extremes(bad="white", over="#7F7F7F", under="#7F7F7F")

