"""Reproduce R's default random number streams (``set.seed``, ``runif``, ``rnorm``).

flashier's default greedy initialiser calls ``set.seed(666)`` and then
``rnorm``; reproducing that stream makes our greedy fits start from exactly the
same point as R's, so that they land in the same local optimum.

R's defaults are the Mersenne-Twister generator (MT19937) and normals by
inversion:

* ``set.seed(seed)`` scrambles the integer seed with the linear congruential
  map :math:`s \\leftarrow 69069 s + 1 \\pmod{2^{32}}` fifty times, then fills
  the 624 words of the MT state with 624 further iterates of the same map (the
  first iterate is a dummy position word); the position is set to 624 so the
  first draw regenerates the state block.
* ``unif_rand()`` is the tempered 32-bit MT output times :math:`2^{-32}`
  (values of exactly 0 are nudged into (0, 1)).
* ``norm_rand()`` ("Inversion") draws :math:`u_1, u_2`, forms
  :math:`u = (\\lfloor 2^{27} u_1 \\rfloor + u_2) / 2^{27}` and returns
  :math:`\\Phi^{-1}(u)`.

Only these published algorithms are implemented here (numpy provides MT19937
itself).
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_BIG = 134217728.0  # 2^27
_I2_32M1 = 2.328306437080797e-10  # 1 / (2^32 - 1)


class RRandom:
    """A stream equal to R's after ``set.seed(seed)`` (Mersenne-Twister, Inversion)."""

    def __init__(self, seed: int):
        s = int(seed) & 0xFFFFFFFF
        for _ in range(50):
            s = (69069 * s + 1) & 0xFFFFFFFF
        key = np.empty(625, dtype=np.uint32)
        for j in range(625):
            s = (69069 * s + 1) & 0xFFFFFFFF
            key[j] = s
        bg = np.random.MT19937()
        bg.state = {"bit_generator": "MT19937",
                    "state": {"key": key[1:].copy(), "pos": 624}}
        self._bg = bg

    def unif(self, n: int) -> np.ndarray:
        """``runif(n)``: uniforms on (0, 1)."""
        raw = self._bg.random_raw(int(n)).astype(np.float64)
        u = raw * 2.3283064365386963e-10
        u[u <= 0.0] = 0.5 * _I2_32M1
        u[1.0 - u <= 0.0] = 1.0 - 0.5 * _I2_32M1
        return u

    def norm(self, n: int) -> np.ndarray:
        """``rnorm(n)``: standard normals by inversion (two uniforms each)."""
        n = int(n)
        u = self.unif(2 * n).reshape(n, 2)
        v = (np.floor(_BIG * u[:, 0]) + u[:, 1]) / _BIG
        return ndtri(v)
