"""Empirical Bayes primitives: mix-SQP, ash, the normal-means families (``ebnm``).

``mixsqp`` (``_mixsqp``, with its active-set QP in ``_qp``) solves the mixture-weight problem;
``mixopt`` holds ashr's mix-SQP / EM wrappers; ``mixdist`` the normal and uniform mixture
likelihoods and posteriors (``mixdist_t``: the Student-t likelihood and truncated-normal mixtures); ``ash`` and ``mash_1by1`` (``_ash``); ``ebnm`` is a sub-package with
one function per prior family.
"""
import importlib

# Lazy (PEP 562): importing one module of the wing (mashlib.eb.mixdist for the posterior, the
# mix-SQP for a fit) no longer imports the ebnm families and through them scipy.optimize and
# scipy.interpolate (a first mash call paid ~0.15 s CPU for them).
_LAZY = {
    "ebnm": (".ebnm", None),
    **{n: ("._ash", n) for n in ("AshResult", "Mash1by1Result", "NormalMix", "UniMix", "ash",
                                 "autoselect_mixsd", "compute_lfsr", "mash_1by1", "qval_from_lfdr")},
    "TNormalMix": (".mixdist_t", "TNormalMix"),
    **{n: ("._mixsqp", n) for n in ("STATUS_CONVERGED", "STATUS_DIDNOTCONVERGE", "STATUS_DIDNOTRUN",
                                    "MixSQPResult", "mixobjective", "mixsqp", "mixsqp_control_default")},
}


def __getattr__(name):
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(spec[0], __name__)
    val = mod if spec[1] is None else getattr(mod, spec[1])
    globals()[name] = val
    return val


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["ebnm", "ash", "AshResult", "NormalMix", "UniMix", "TNormalMix", "compute_lfsr", "autoselect_mixsd",
           "qval_from_lfdr", "mash_1by1", "Mash1by1Result", "mixsqp", "MixSQPResult",
           "mixsqp_control_default", "mixobjective", "STATUS_CONVERGED", "STATUS_DIDNOTCONVERGE",
           "STATUS_DIDNOTRUN"]
