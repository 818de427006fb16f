r"""Grids for the ebnm scale-mixture families (map §2.7 ``ebnm_scale_normalmix``).

Normal scale mixtures
---------------------
For a grid of normal components with marginal variances
:math:`s^2 + \sigma_k^2 = s^2 m^k` (ratio :math:`m` between neighbours), the worst
per-observation Kullback-Leibler loss of replacing a prior :math:`N(0,\sigma^2)` by
the best mixture of its two neighbours is, in units of :math:`s^2 + \sigma_k^2`,

.. math::

    \mathrm{KL}(m) = \max_{1\le\omega\le m}\;\min_{0\le\pi\le1}\;
      \mathrm{KL}\big(N(0,\omega)\,\big\|\,\pi N(0,1) + (1-\pi)N(0,m)\big).

ebnm tabulates :math:`(\mathrm{KL}(m_j), m_j)` for 100 multipliers and picks the
multiplier whose KL equals the target :math:`1/n` by interpolating
:math:`\log m` linearly in :math:`\log\mathrm{KL}`, clamped to the table's range.
The table below was recomputed from this definition (200-point Gauss-Hermite
quadrature, nested bounded scalar optimisation, :func:`smn_kl`) at
:math:`m_j` = 100 equally spaced values from 1.01 to 4. With it the multiplier
for R's ``ebnm_vec`` case (n = 2000) is reproduced to 1.8e-7 relative
(1.61661839 vs R's 1.61661857) and n = 10 or 44 give the clamp value 4 exactly, as R;
for n = 1000 (flashier gtex case ii) R uses 1.78970 where this table gives 1.78945
(1.4e-4 relative; R's table nodes are not exactly these, and no simple node set found
matches both R values). The resulting fits differ by ~1e-6 (n = 2000) and 3e-3 in the
flash ELBO (case ii).

The grid (``ebnm_scale_normalmix``) is then

.. math::

    K = \Big\lceil \log_m\big(\max(\max_i (x_i-\mu)^2 / s_{\min}^2,\, 1) + 1\big)\Big\rceil + 1,
    \qquad \sigma_k = \sqrt{s_{\min}^2 (m^{k} - 1)}, \; k = 0..K-1,

(:math:`K` clamped to ``[min_K, max_K]``); :math:`\sigma_0 = 0` is a point mass.
"""
from __future__ import annotations

import numpy as np

__all__ = ["smn_kl", "smn_mult", "scale_normalmix"]

_SMN_M = np.linspace(1.01, 4.0, 100)
_SMN_KL = np.array([
    1.148613632575142e-10, 2.8224662487009105e-08, 2.495687350149517e-07, 9.777800183128672e-07,
    2.6247889162875023e-06, 5.658842251624638e-06, 1.0571986221292258e-05, 1.7855874399723415e-05,
    2.7984545179451708e-05, 4.140280121492932e-05, 5.851894114502522e-05, 7.970077287093244e-05,
    0.00010527403136453665, 0.0001355225060008661, 0.0001706893406570552, 0.00021097910082493176,
    0.0002565603068902687, 0.00030756821472219037, 0.0003641076876238509, 0.0004262560512266005,
    0.000494065858352146, 0.0005675675169553767, 0.0006467717532173249, 0.0007316718954277273,
    0.0008222459738403084, 0.0009184586382467268, 0.0010202628993785457, 0.0011276017030206415,
    0.001240409347340099, 0.0013586127547412829, 0.0014821326097919293, 0.0016108843746137948,
    0.0017447791927167776, 0.0018837246916872464, 0.002027625694473071, 0.0021763848483006406,
    0.002329903179537962, 0.0024880805821106116, 0.002650816246399501, 0.002818009034902082,
    0.002989557810342566, 0.0031653617213558737, 0.003345320450360573, 0.0035293344277687296,
    0.0037173050162516794, 0.003909134668399398, 0.004104727060757691, 0.004303987206915998,
    0.004506821552033013, 0.004713138050934604, 0.004922846231688724, 0.005135857246358205,
    0.005352083910448023, 0.005571440732400241, 0.005793843934342612, 0.006019211465165972,
    0.006247463006886254, 0.006478519975146606, 0.0067123055146150095, 0.006948744489955833,
    0.007187763472973377, 0.007429290726462876, 0.007673256185242146, 0.007919591434785204,
    0.00816822968783211, 0.008419105759304824, 0.008672156039823586, 0.008927318468082689,
    0.009184532502315488, 0.009443739091050327, 0.009704880643336782, 0.009967900998598523,
    0.010232745396250745, 0.010499360445203483, 0.010767694093355692, 0.011037695597172784,
    0.011309315491427026, 0.011582505559170517, 0.01185721880200034, 0.012133409410665779,
    0.012411032736063232, 0.012690045260653822, 0.012970404570334722, 0.013252069326790896,
    0.013534999240346013, 0.01381915504333088, 0.014104498463980972, 0.014390992200873965,
    0.014678599897912568, 0.014967286119858068, 0.015257016328415961, 0.015547756858874547,
    0.015839474897293166, 0.016132138458239388, 0.0164257163630689, 0.016720178218743352,
    0.0170154943971799, 0.01731163601512517, 0.017608574914545344, 0.017906283643524312,
])
_LOG_SMN_M = np.log(_SMN_M)
_LOG_SMN_KL = np.log(_SMN_KL)


def smn_kl(m: float, nquad: int = 200) -> float:
    r"""Worst-case KL loss :math:`\mathrm{KL}(m)` of a normal scale-mixture grid with ratio ``m``.

    Computed with ``nquad``-point Gauss-Hermite quadrature for the expectation under
    :math:`N(0,\omega)` and bounded scalar optimisation over :math:`\pi` (inner min)
    and :math:`\omega \in [1, m]` (outer max). Used to build the table; slow (~20 ms).
    """
    from scipy import optimize

    z, w = np.polynomial.hermite_e.hermegauss(nquad)
    w = w / np.sqrt(2 * np.pi)

    def kl(om, p):
        x2 = z * z * om
        lp = -0.5 * np.log(om) - x2 / (2 * om)
        lq = np.logaddexp(np.log(p) - x2 / 2, np.log1p(-p) - 0.5 * np.log(m) - x2 / (2 * m))
        return np.sum(w * (lp - lq))

    def inner(om):
        return optimize.minimize_scalar(lambda p: kl(om, p), bounds=(0, 1), method="bounded",
                                        options={"xatol": 1e-13}).fun

    res = optimize.minimize_scalar(lambda om: -inner(om), bounds=(1, m), method="bounded",
                                   options={"xatol": 1e-12})
    return float(-res.fun)


def smn_mult(kl_target: float) -> float:
    """Grid multiplier m with KL(m) = ``kl_target`` (log-log interpolation, clamped to [1.01, 4])."""
    return float(np.exp(np.interp(np.log(kl_target), _LOG_SMN_KL, _LOG_SMN_M)))


def scale_normalmix(x, s, mode=0.0, min_K=3, max_K=300, KLdiv_target=None) -> np.ndarray:
    """ebnm's default grid of normal-mixture sds (``ebnm_scale_normalmix``); see the module docstring.

    Parameters
    ----------
    x, s : ndarray
        Observations and standard errors (only finite, positive ``s`` are used for
        :math:`s_{\\min}`).
    mode : float
    min_K, max_K : int
        Bounds on the number of components.
    KLdiv_target : float, optional
        Default ``1 / len(x)``.

    Returns
    -------
    ndarray (K,)
        Component sds, the first 0.
    """
    x = np.asarray(x, float)
    s = np.asarray(s, float)
    if KLdiv_target is None:
        KLdiv_target = 1.0 / x.size
    fin = np.isfinite(s) & (s > 0)
    smin2 = np.min(s[fin]) ** 2 if fin.any() else 1.0
    mult = smn_mult(KLdiv_target)
    xs = x[fin] if fin.any() else x
    ratio = max(np.max((xs - mode) ** 2) / smin2, 1.0)
    K = int(np.ceil(np.log(ratio + 1.0) / np.log(mult))) + 1
    K = int(min(max(K, min_K), max_K))
    return np.sqrt(smin2 * (mult ** np.arange(K) - 1.0))


# ----------------------------------------------------------------------------- uniform mixtures
def _unif_logf(x, a):
    """log density of U[-a, a] + N(0, 1) at x (a = 0: the standard normal)."""
    from scipy.special import log_ndtr

    if a == 0:
        return -0.5 * np.log(2 * np.pi) - 0.5 * x * x
    lp1 = log_ndtr(a - x)
    lp2 = log_ndtr(-a - x)
    return lp1 + np.log1p(-np.exp(lp2 - lp1)) - np.log(2 * a)


_GL_CACHE: dict = {}


def _leggauss(n):
    if n not in _GL_CACHE:
        _GL_CACHE[n] = np.polynomial.legendre.leggauss(n)
    return _GL_CACHE[n]


def unif_kl(b0: float, b1: float, nquad: int = 400) -> float:
    r"""Worst-case KL loss between neighbouring symmetric uniform components.

    .. math::

        \mathrm{KL}(b_0, b_1) = \max_{b_0 \le a \le b_1} \min_{0\le\pi\le1}
        \mathrm{KL}\big(f_a \,\|\, \pi f_{b_0} + (1-\pi) f_{b_1}\big),
        \qquad f_a = U[-a, a] * N(0, 1),

    in units of the standard error (Gauss-Legendre on :math:`[0, b_1 + 12]`, using symmetry).
    """
    from scipy import optimize

    gx, gw = _leggauss(nquad)
    L = b1 + 12.0
    X = (gx + 1) / 2 * L
    W = gw * L  # (L/2) * 2 for the symmetric half
    f0 = _unif_logf(X, b0)
    f1 = _unif_logf(X, b1)

    def inner(a):
        lp = _unif_logf(X, a)
        wp = W * np.exp(lp)

        def kl(pi):
            return np.sum(wp * (lp - np.logaddexp(np.log(pi) + f0, np.log1p(-pi) + f1)))

        return optimize.minimize_scalar(kl, bounds=(0, 1), method="bounded", options={"xatol": 1e-12}).fun

    res = optimize.minimize_scalar(lambda a: -inner(a), bounds=(b0, b1), method="bounded",
                                   options={"xatol": 1e-8})
    return float(-res.fun)


def unif_next(b0: float, kl_target: float, step_hint: float = 1.0) -> float:
    """Next grid point: the b1 > b0 with :func:`unif_kl` (b0, b1) = ``kl_target`` (Brent, xtol 1e-11)."""
    from scipy import optimize

    def f(b1):
        return unif_kl(b0, b1) / kl_target - 1.0

    lo, hi = b0 + 0.7 * step_hint, b0 + 1.4 * step_hint
    while f(hi) < 0:
        lo, hi = hi, b0 + 2.0 * (hi - b0)
    while f(lo) > 0:
        lo = b0 + 0.5 * (lo - b0)
    return float(optimize.brentq(f, lo, hi, xtol=1e-11, rtol=1e-14))


def build_unimix_table(log10_levels, bmax):
    """Greedy uniform grids (from 0, in units of min s) at each KL level, up to the first point >= bmax."""
    out = {}
    for lv in log10_levels:
        b = [0.0]
        hint = 1.5 * (10.0 ** lv / 5e-4) ** 0.25
        while b[-1] < bmax:
            b.append(unif_next(b[-1], 10.0 ** lv, hint))
            hint = b[-1] - b[-2]
        out[float(lv)] = np.array(b)
    return out


def scale_unimix(x, s, mode=0.0, KLdiv_target=None) -> np.ndarray:
    r"""ebnm's grid of uniform half-widths (``ebnm_scale_unimix``), the first entry 0.

    ebnm stores, for KL levels :math:`10^{j/4}` up to :math:`10^{-2}`, the greedy sequences
    :math:`0 = b_0 < b_1 < \dots` (units of :math:`s_{\min}`) with
    :func:`unif_kl` :math:`(b_{k-1}, b_k)` equal to the level, and interpolates each
    :math:`b_k` linearly in :math:`\log` KL between the two levels around the target
    :math:`1/n`; targets above :math:`10^{-2}` (n < 100) use the :math:`10^{-2}` sequence.
    Both rules were identified from R output: the ``ebnm_vec`` grid (n = 2000) is
    reproduced to 7.5e-6 relative, and in flashier's gtex fits the n = 1000 grids equal
    the :math:`10^{-3}` sequence and the n = 44 grids the :math:`10^{-2}` sequence (to 1e-4
    in the printed ratios). The grid stops at the first
    :math:`b_K \ge \max_i|x_i-\mu|/s_{\min}`. Beyond the tabulated sequences
    (:data:`mashlib.eb.ebnm._unigrid_table.LEVELS`: :math:`10^{-6}` to :math:`10^{-2}`; b up to
    300 for levels :math:`\ge 10^{-4}`, 100 below) the normal-mixture grid
    :func:`scale_normalmix` is used instead, as ebnm does when its table runs out
    (ebnm's own table extent is not known; the fallback may therefore trigger at a
    different point than in R).
    """
    from ._unigrid_table import LEVELS, SEQS

    x = np.asarray(x, float)
    s = np.asarray(s, float)
    if KLdiv_target is None:
        KLdiv_target = 1.0 / x.size
    fin = np.isfinite(s) & (s > 0)
    if not fin.any():
        return scale_normalmix(x, s, mode, KLdiv_target=KLdiv_target)
    smin = np.min(s[fin])
    target = np.max(np.abs(x[fin] - mode)) / smin
    lv = np.log10(KLdiv_target)
    levels = np.asarray(LEVELS)
    if levels.size == 0:
        return scale_normalmix(x, s, mode, KLdiv_target=KLdiv_target)
    if lv <= levels[0] or lv >= levels[-1]:
        seq = np.asarray(SEQS[float(levels[0] if lv <= levels[0] else levels[-1])])
    else:
        j = int(np.searchsorted(levels, lv))
        lo, hi = levels[j - 1], levels[j]
        t = (lv - lo) / (hi - lo)
        a, b = np.asarray(SEQS[float(lo)]), np.asarray(SEQS[float(hi)])
        n = min(a.size, b.size)
        seq = a[:n] + t * (b[:n] - a[:n])
    above = np.flatnonzero(seq >= target)
    if above.size == 0:
        return scale_normalmix(x, s, mode, KLdiv_target=KLdiv_target)
    return smin * seq[: above[0] + 1]
