r"""The :class:`FlashFit` object: data, posterior moments, priors, precision, ELBO.

A fit of the EBMF model :math:`Y = LF^\top + E` stores, per factor *k* and
mode *n* (1 = loadings L, 2 = factors F), the posterior first and second
moments :math:`\bar\ell_{\cdot k}, \overline{\ell^2}_{\cdot k}` (``EF``, ``EF2``),
the fitted prior :math:`\hat g_{k,n}`, and the ELBO term
:math:`\mathrm{KL}_{k,n}`; and the residual precision (:mod:`.variance`). The
ELBO is :math:`\sum_{k,n}\mathrm{KL}_{k,n}` plus the likelihood term.

Accessors mirror flashier's ``flash`` object: ``elbo``, ``n_factors``, ``pve``,
``L_pm``, ``F_pm``, ``L_psd``, ``F_psd``, ``L_ghat``, ``F_ghat``,
``residuals_sd``, ``fitted()``, ``residuals()``, ``sampler(nsamp)``, and
:func:`ldf`.
"""
from __future__ import annotations

import copy

import numpy as np

from .._errors import MashInputError
from .variance import TauState, VarSpec, estimate_tau


class Factor:
    """A single rank-one term while it is being fitted (flashier's ``factor``).

    ``k`` is None for a new (greedy) factor, else its index in the fit.
    """

    def __init__(self, EF, EF2, k=None, KL=None, g=None, fns=None):
        self.EF = [np.asarray(EF[0], float), np.asarray(EF[1], float)]
        self.EF2 = [np.asarray(EF2[0], float), np.asarray(EF2[1], float)]
        self.k = k
        self.KL = [0.0, 0.0] if KL is None else list(KL)
        self.g = [None, None] if g is None else list(g)
        self.fns = fns
        self.is_zero = bool(all(np.all(e == 0) for e in self.EF))
        self.is_valid = self.is_zero
        self.tau: TauState | None = None
        self.obj = -np.inf

    def copy(self):
        """A copy whose arrays and lists can be replaced independently."""
        c = copy.copy(self)
        c.EF, c.EF2, c.KL, c.g = list(self.EF), list(self.EF2), list(self.KL), list(self.g)
        return c


def _rank1(Z, a, b):
    M = np.outer(a, b)
    return M if Z is None else M * Z


class FlashFit:
    """An EBMF fit (flashier's ``flash`` / ``flash_fit`` objects in one).

    Build it with :func:`mashlib.ebmf.flash_init`; grow and refine it with
    ``flash_greedy``, ``flash_backfit``, ``flash_nullcheck``, ... (each returns a
    new fit). The ELBO of the current fit is :attr:`elbo`.
    """

    def __init__(self, Y, Z, spec: VarSpec, row_names=None, col_names=None, verbose=1):
        n, p = Y.shape
        self.Y = Y
        self.Z = Z
        self.spec = spec
        self.row_names = row_names
        self.col_names = col_names
        self.EF = [np.zeros((n, 0)), np.zeros((p, 0))]
        self.EF2 = [np.zeros((n, 0)), np.zeros((p, 0))]
        self.KL = np.zeros((2, 0))
        self.g: list = []
        self.fns: list = []
        self.is_zero = np.zeros(0, bool)
        self.is_valid = np.zeros(0, bool)
        self.fix: dict = {}
        self.R = Y.copy()
        self.V = np.zeros_like(Y)
        self.tau: TauState = estimate_tau(spec, Z, self.R, self.V, None)
        self.obj = self.tau.lik
        self.conv_tol = float(np.sqrt(np.finfo(float).eps) * n * p)
        self.verbose = int(verbose)
        self.flags: dict = {}
        # controls (mashlib.ebmf.control): convergence criterion (None: ELBO difference),
        # verbose table columns, timeout deadline (time.monotonic() seconds)
        from .control import _DEFAULT_COLS

        self.conv_crit_fn = None
        self.verbose_fns, self.verbose_colnames, self.verbose_colwidths = (list(v) for v in _DEFAULT_COLS)
        self.timeout = None
        self.timeout_set = None

    # ------------------------------------------------------------------ state
    def copy(self) -> "FlashFit":
        """A copy sharing the (read-only) data but not the fitted state."""
        c = copy.copy(self)
        c.EF = [e.copy() for e in self.EF]
        c.EF2 = [e.copy() for e in self.EF2]
        c.KL = self.KL.copy()
        c.g = [list(gk) for gk in self.g]
        c.fns = list(self.fns)
        c.is_zero = self.is_zero.copy()
        c.is_valid = self.is_valid.copy()
        c.fix = dict(self.fix)
        c.R = self.R.copy()
        c.V = self.V.copy()
        c.flags = dict(self.flags)
        return c

    @property
    def dims(self):
        """(n, p)."""
        return self.Y.shape

    def recompute(self):
        """Recompute residuals, variance part and precision from scratch."""
        self._rebuild_residuals()
        self.tau = estimate_tau(self.spec, self.Z, self.R, self.V, self.tau)
        self.obj = float(self.KL.sum()) + self.tau.lik

    def factor(self, k) -> Factor:
        """Extract factor ``k`` (flashier's ``extract.factor``)."""
        f = Factor([self.EF[0][:, k].copy(), self.EF[1][:, k].copy()],
                   [self.EF2[0][:, k].copy(), self.EF2[1][:, k].copy()],
                   k=k, KL=self.KL[:, k], g=self.g[k], fns=self.fns[k])
        f.is_zero = bool(self.is_zero[k])
        f.is_valid = bool(self.is_valid[k])
        f.obj = self.obj
        return f

    def residuals_without(self, k):
        """Residuals and variance part with factor ``k`` removed (None: all kept)."""
        if k is None:
            return self.R, self.V
        l, f = self.EF[0][:, k], self.EF[1][:, k]
        l2, f2 = self.EF2[0][:, k], self.EF2[1][:, k]
        Rk = self.R + _rank1(self.Z, l, f)
        Vk = self.V - (_rank1(self.Z, l2, f2) - _rank1(self.Z, l * l, f * f))
        return Rk, Vk

    def candidate(self, fac: Factor, Rk, Vk):
        """Residual and variance matrices when ``fac`` replaces (or joins) the factors."""
        l, f = fac.EF
        Rn = Rk - _rank1(self.Z, l, f)
        Vn = Vk + _rank1(self.Z, fac.EF2[0], fac.EF2[1]) - _rank1(self.Z, l * l, f * f)
        return Rn, Vn

    def factor_tau_obj(self, fac: Factor, Rk, Vk):
        """Set ``fac.tau`` and ``fac.obj`` (flashier's ``update.R2.tau.and.obj``)."""
        Rn, Vn = self.candidate(fac, Rk, Vk)
        prev = fac.tau if fac.tau is not None else self.tau
        fac.tau = estimate_tau(self.spec, self.Z, Rn, Vn, prev)
        kl = float(self.KL.sum()) + sum(fac.KL)
        if fac.k is not None:
            kl -= float(self.KL[:, fac.k].sum())
        fac.obj = kl + fac.tau.lik
        return Rn, Vn

    def add_factor(self, fac: Factor, Rn, Vn):
        """Append an accepted greedy factor (flashier's ``add.new.factor.to.flash``)."""
        for n in (0, 1):
            self.EF[n] = np.column_stack([self.EF[n], fac.EF[n]])
            self.EF2[n] = np.column_stack([self.EF2[n], fac.EF2[n]])
        self.KL = np.column_stack([self.KL, np.asarray(fac.KL, float)])
        self.g.append(list(fac.g))
        self.fns.append(fac.fns)
        self.is_zero = np.append(self.is_zero, False)
        self.is_valid = np.append(self.is_valid, fac.is_valid)
        self.tau, self.obj = fac.tau, fac.obj
        # residuals were updated incrementally while the factor was fitted; rebuild them
        # from scratch so rounding cannot accumulate over many factors (flashier #104)
        self._rebuild_residuals()

    def _rebuild_residuals(self):
        """Recompute R = Z(Y - LF') and the variance part V from the moments."""
        L, F = self.EF
        fitted = L @ F.T
        var = self.EF2[0] @ self.EF2[1].T - (L * L) @ (F * F).T
        if self.Z is None:
            self.R, self.V = self.Y - fitted, var
        else:
            self.R, self.V = self.Z * (self.Y - fitted), self.Z * var

    def insert_factor(self, fac: Factor, Rn=None, Vn=None, update_tau=True):
        """Write factor ``fac.k`` back (flashier's ``insert.factor``)."""
        k = fac.k
        if Rn is None:
            Rk, Vk = self.residuals_without(k)
            Rn, Vn = self.candidate(fac, Rk, Vk)
        for n in (0, 1):
            self.EF[n][:, k] = fac.EF[n]
            self.EF2[n][:, k] = fac.EF2[n]
        self.KL[:, k] = fac.KL
        self.g[k] = list(fac.g)
        self.R, self.V = Rn, Vn
        if update_tau:
            self.tau, self.obj = fac.tau, fac.obj
        if fac.is_zero:
            self.is_zero[k] = True
        if fac.is_valid:
            self.is_valid[k] = True

    # ---------------------------------------------------------------- outputs
    @property
    def n_factors(self) -> int:
        """Number of factors K (including any zeroed ones not yet removed)."""
        return self.EF[0].shape[1]

    @property
    def elbo(self) -> float:
        """The evidence lower bound of the current fit."""
        return float(self.obj)

    @property
    def L_pm(self):
        """Posterior means of the loadings (n x K)."""
        return self.EF[0].copy()

    @property
    def F_pm(self):
        """Posterior means of the factors (p x K)."""
        return self.EF[1].copy()

    @property
    def L_psd(self):
        """Posterior SDs of the loadings, sqrt(max(E[l^2] - E[l]^2, 0))."""
        return np.sqrt(np.maximum(self.EF2[0] - self.EF[0] ** 2, 0.0))

    @property
    def F_psd(self):
        """Posterior SDs of the factors."""
        return np.sqrt(np.maximum(self.EF2[1] - self.EF[1] ** 2, 0.0))

    @property
    def L_ghat(self):
        """Fitted priors of the loadings, one per factor."""
        return [gk[0] for gk in self.g]

    @property
    def F_ghat(self):
        """Fitted priors of the factors, one per factor."""
        return [gk[1] for gk in self.g]

    @property
    def pve(self):
        r"""Proportion of variance explained per factor.

        :math:`\mathrm{PVE}_k = S_k / (\sum_k S_k + \sum_{ij} z_{ij}/\tau_{ij})` with
        :math:`S_k = \prod_n \sum_i \overline{x^2}_{ik}` (zero factors: 0).
        """
        S = self.EF2[0].sum(axis=0) * self.EF2[1].sum(axis=0)
        S = np.where(self.is_zero, 0.0, S)
        return S / (S.sum() + self.tau.var_from_tau)

    @property
    def residuals_sd(self):
        """1/sqrt(tau): scalar, vector, or a pair of vectors (Kronecker); None for matrix tau."""
        t = self.tau.tau
        if self.spec.kind == "simple":
            return 1.0 / np.sqrt(t)
        if self.spec.kind == "kron":
            return [1.0 / np.sqrt(t[0]), 1.0 / np.sqrt(t[1])]
        if self.spec.kind == "zero" and np.ndim(t) < 2:
            return 1.0 / np.sqrt(t)
        return None

    @property
    def L_lfsr(self):
        """Local false sign rates of the loadings (n x K; NaN where undefined)."""
        from .sampler import fit_lfsr

        return fit_lfsr(self)[0]

    @property
    def F_lfsr(self):
        """Local false sign rates of the factors (p x K; NaN where undefined)."""
        from .sampler import fit_lfsr

        return fit_lfsr(self)[1]

    def fitted(self):
        """Posterior mean of the low-rank part, :math:`\\bar L \\bar F^\\top`."""
        return self.EF[0] @ self.EF[1].T

    def residuals(self):
        """Y minus the fitted values, NaN in missing cells."""
        R = self.Y - self.fitted()
        if self.Z is not None:
            R = np.where(self.Z == 0, np.nan, R)
        return R

    def ldf(self, type="f"):
        """See :func:`ldf`."""
        return ldf(self, type)

    def sampler(self, nsamp, rng=None):
        """Draw ``nsamp`` samples of (L, F) from the variational posterior.

        Each factor and mode uses its ebnm posterior sampler (prior fixed at
        :math:`\\hat g`); zero factors give zeros and fully fixed modes their
        fixed values. Returns a list of ``{"L": n x K, "F": p x K}`` dicts.
        """
        from .sampler import sample_fit

        return sample_fit(self, int(nsamp), rng)

    def plot(self, plot_type="scree", **kwargs):
        """Plot the fit; see :mod:`mashlib.ebmf.plots`."""
        from . import plots

        fn = {"scree": plots.plot_scree, "bar": plots.plot_bar, "heatmap": plots.plot_heatmap,
              "intervals": plots.plot_intervals}.get(plot_type)
        if fn is None:
            raise MashInputError(f"plot_type: {plot_type!r} is not one of 'scree', 'bar', 'heatmap', 'intervals'.")
        return fn(self, **kwargs)

    def __str__(self):
        """Summary as flashier's ``print.flash``."""
        K = self.n_factors
        if K == 0:
            lines = ["Flash object with zero factors."]
        elif K == 1:
            lines = ["Flash object with one factor.", f"  Proportion of variance explained: {self.pve[0]:0.3f}"]
        else:
            pve = self.pve
            lines = [f"Flash object with {K} factors."]
            if np.all(pve < 0.001):
                lines.append("  All factors have PVE < 0.001.")
            else:
                lines.append("  Proportion of variance explained" + ("*" if np.any(pve < 0.001) else "") + ":")
                lines += [f"    Factor {k + 1}: {v:0.3f}" for k, v in enumerate(pve) if v > 0.001]
                if np.any(pve < 0.001):
                    lines.append("    *Factors with PVE < 0.001 are omitted from this summary.")
        lines.append(f"  Variational lower bound: {self.elbo:0.3f}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<FlashFit {self.dims[0]}x{self.dims[1]}: {self.n_factors} factors, ELBO {self.elbo:.3f}>"


def ldf(fit: FlashFit, type="f"):
    """LDF decomposition :math:`\\bar L\\bar F^\\top = \\tilde L D \\tilde F^\\top`.

    Each column of the posterior means is divided by its norm: ``"f"``/``"2"``
    (L2), ``"o"``/``"1"`` (L1) or ``"i"``/``"m"`` (max-abs); :math:`D_k` is the
    product of the two norms. Zero factors get D = 0 and zero columns.

    Returns
    -------
    (L, D, F) : tuple of ndarray (n x K, K, p x K)
    """
    t = str(type).lower()
    t = {"2": "f", "1": "o", "m": "i"}.get(t, t)
    if t not in ("f", "o", "i"):
        raise MashInputError(f"type: {type!r} is not one of 'f', '2', 'o', '1', 'i', 'm'.")
    if fit.n_factors == 0:
        raise MashInputError("fit: the flash fit has no factors, so there is no LDF decomposition.")
    out, norms = [], []
    for X in fit.EF:
        if t == "f":
            nm = np.sqrt(np.sum(X * X, axis=0))
        elif t == "o":
            nm = np.sum(np.abs(X), axis=0)
        else:
            nm = np.max(np.abs(X), axis=0)
        nm = np.where(fit.is_zero, np.inf, nm)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(X / nm[None, :])
        norms.append(nm)
    D = norms[0] * norms[1]
    D = np.where(fit.is_zero, 0.0, D)
    return out[0], D, out[1]
