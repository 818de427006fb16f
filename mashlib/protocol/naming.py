"""Output file names of the protocol, exactly as the SoS pipeline names them (map 1.0).

==========================  ==============================================================
step                        file
==========================  ==============================================================
flash/flash_nonneg/pca/...  ``{cwd}/{prefix}.{flash|flash_nonneg|pca|canonical}.rds`` (no EM)
vhat_<m>                    ``{cwd}/{prefix}.{EM}.V_<m>.rds`` (``identity``, ``simple``, ``mle``,
                            ``vhat_corshrink_xcondition``, ``vhat_simple_specific``)
ed_bovy / ud / ...          ``{cwd}/{prefix}.{EM}.prior.rds``
mash (fit)                  ``{cwd}/{prefix}.{EM}.mash_model.rds``
mash (posterior)            ``{cwd}/{prefix}.{EM}.posterior.rds``
plot_U                      ``{cwd}/{basename of data without ext}[_name].pdf``
==========================  ==============================================================
"""
from __future__ import annotations

from pathlib import Path

from .._errors import MashInputError
from .._validation import check_effect_model

__all__ = ["COMPONENTS", "VHAT_METHODS", "effect_model", "alpha_of", "prefix_of",
           "component_file", "vhat_method", "vhat_workflow", "vhat_file", "prior_file",
           "mash_model_file", "posterior_file", "plot_file", "notebook_copy", "sidecar_of"]

COMPONENTS = ("flash", "flash_nonneg", "pca", "canonical")
VHAT_METHODS = ("identity", "simple", "mle", "vhat_corshrink_xcondition", "vhat_simple_specific")


def effect_model(em: str) -> str:
    """Normalise the effect model: ``"EE"`` or ``"EZ"`` (any case).

    The SoS scripts silently ran anything but EZ as EE (and named the files ``*.EE.*``);
    here any other value is a one-line :class:`MashInputError`.
    """
    return check_effect_model(em)


def alpha_of(em: str) -> float:
    """alpha = 1 for EZ, 0 otherwise (map 1.0)."""
    return 1.0 if effect_model(em) == "EZ" else 0.0


def _stem(path) -> str:
    name = Path(str(path)).name
    return name[:-len(Path(name).suffix)] if Path(name).suffix else name


def prefix_of(data, output_prefix: str | None) -> str:
    """``output_prefix``, or the basename of ``data`` without its extension."""
    if output_prefix:
        return str(output_prefix)
    if not data:
        raise MashInputError("--data is required (the mashr input RDS); --output-prefix defaults to its basename")
    return _stem(data)


def component_file(cwd, prefix: str, component: str) -> Path:
    """``{cwd}/{prefix}.{component}.rds`` (component files carry no effect model)."""
    if component not in COMPONENTS:
        raise MashInputError(f"unknown mixture component {component!r}; valid: {', '.join(COMPONENTS)}")
    return Path(cwd) / f"{prefix}.{component}.rds"


def vhat_method(vhat: str) -> str:
    """Validate a ``--vhat`` value; ``corshrink_xcondition`` and ``simple_specific`` get the ``vhat_`` prefix."""
    v = str(vhat)
    if v in ("corshrink_xcondition", "simple_specific"):
        v = "vhat_" + v
    if v.startswith("vhat_") and v[5:] in ("identity", "simple", "mle"):
        v = v[5:]
    if v not in VHAT_METHODS:
        raise MashInputError(f"unknown --vhat {vhat!r}; valid: {', '.join(VHAT_METHODS)}")
    return v


def vhat_workflow(vhat: str) -> str:
    """The mixture_prior workflow that writes V for ``--vhat`` (``simple`` -> ``vhat_simple``)."""
    v = vhat_method(vhat)
    return v if v.startswith("vhat_") else f"vhat_{v}"


def vhat_file(cwd, prefix: str, em: str, vhat: str) -> Path:
    """``{cwd}/{prefix}.{EM}.V_{vhat}.rds``."""
    return Path(cwd) / f"{prefix}.{effect_model(em)}.V_{vhat_method(vhat)}.rds"


def prior_file(cwd, prefix: str, em: str) -> Path:
    """``{cwd}/{prefix}.{EM}.prior.rds``."""
    return Path(cwd) / f"{prefix}.{effect_model(em)}.prior.rds"


def mash_model_file(cwd, prefix: str, em: str) -> Path:
    """``{cwd}/{prefix}.{EM}.mash_model.rds``."""
    return Path(cwd) / f"{prefix}.{effect_model(em)}.mash_model.rds"


def posterior_file(cwd, prefix: str, em: str) -> Path:
    """``{cwd}/{prefix}.{EM}.posterior.rds``."""
    return Path(cwd) / f"{prefix}.{effect_model(em)}.posterior.rds"


def plot_file(cwd, data, name: str = "") -> Path:
    """``{cwd}/{basename of data without extension}[_name].pdf`` (``$`` in name becomes ``_``)."""
    suffix = f"_{str(name).replace('$', '_')}" if name else ""
    return Path(cwd) / f"{_stem(data)}{suffix}.pdf"


def notebook_copy(cwd, prefix: str, workflow: str) -> Path:
    """Where a papermill run keeps its executed notebook: ``{cwd}/{prefix}.{workflow}.ipynb``."""
    return Path(cwd) / f"{prefix}.{workflow}.ipynb"


def sidecar_of(output) -> Path:
    """The JSON provenance file of an output: ``<output>.json``."""
    p = Path(output)
    return p.with_name(p.name + ".json")
