"""Step chaining as in SoS: run missing producers first, skip steps that are up to date.

A step is *up to date* when all its outputs exist and its signature holds: the JSON
sidecar of its first output records the same step parameters, the same code (a digest of
the notebook cell that computes it, comments and layout ignored), inputs with the same
content (sha256) and the outputs as they are now. Paths are resolved to absolute paths
before anything is named or compared, and outputs are recorded by file name, so the same
folder however it is spelled (``output/x``, ``./output/x/``, ``/abs/output/x``) is one
cache, and a moved folder keeps its cache. An output without a sidecar (made outside
mashlib) is up to date when it is newer than every input (the make rule). When a step
reruns, :func:`why_rerun` says why (no output yet, which parameter changed, which input
changed, the code changed, an output was modified).

A step whose input is missing runs the step that produces that input first (into the
same ``cwd``), so ``ed_bovy`` with the defaults runs ``flash``, ``flash_nonneg``,
``pca``, ``canonical`` and ``vhat_simple`` before itself. The computation of every step is
the code cell of its section in the workflow notebook (:mod:`mashlib.protocol.nbcode`):
papermill runs it in a kernel, :func:`mashlib.protocol.cells.run_workflow` runs the same
cell in-process.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from .._atomic import atomic_path
from .._errors import MashInputError
from .._validation import check_writable_dir
from . import naming, steps
from . import posterior_workflow as _pw
from .params import PARAMS, WORKFLOWS, Options, defaults, options_class

__all__ = ["Step", "STEPS", "resolve_params", "plan", "plan_resolved", "check_inputs", "why_rerun",
           "code_digest", "write_sidecar", "missing_message", "workflow_steps"]


@dataclasses.dataclass(frozen=True)
class Step:
    """One SoS step: its outputs, its inputs (with the step producing each), its parameters.

    ``notebook`` is the workflow notebook whose section ``name`` computes it.
    """

    name: str
    outputs: Callable[[dict], list[Path]]
    inputs: Callable[[dict], list[tuple[Path, str | None]]]
    params: tuple[str, ...]
    notebook: str = "mixture_prior"


def _prefix(p):
    return naming.prefix_of(p.data, p.output_prefix)


def _comp_step(c):
    return Step(c, lambda p, c=c: [naming.component_file(p.cwd, _prefix(p), c)],
                lambda p: [(Path(p.data), None)], ("effect_model",) + (("npc",) if c == "pca" else ()))


def _vhat_step(method, extra=(), needs_prior=False):
    wf = naming.vhat_workflow(method)

    def inputs(p):
        ins = [(Path(p.data), None)]
        if needs_prior:
            ins.append((naming.prior_file(p.cwd, _prefix(p), p.effect_model), "ed_bovy"))
        return ins
    return Step(wf, lambda p: [naming.vhat_file(p.cwd, _prefix(p), p.effect_model, method)],
                inputs, ("effect_model",) + tuple(extra))


def _prior_step(name):
    def inputs(p):
        prefix = _prefix(p)
        ins = [(Path(p.data), None)]
        ins += [(naming.component_file(p.cwd, prefix, c), c) for c in p.mixture_components]
        v = naming.vhat_method(p.vhat)
        v = "simple" if v == "mle" else v
        ins.append((naming.vhat_file(p.cwd, prefix, p.effect_model, v), naming.vhat_workflow(v)))
        return ins
    extra = ("seed",) if name.startswith("ud") else ("ed_accelerate",) if name == "ed_bovy" else ()
    return Step(name, lambda p: [naming.prior_file(p.cwd, _prefix(p), p.effect_model)], inputs,
                ("effect_model", "mixture_components") + extra)


def _mash_model(p):
    return naming.mash_model_file(p.cwd, _prefix(p), p.effect_model)


STEPS: dict[str, Step] = {c: _comp_step(c) for c in naming.COMPONENTS}
STEPS.update({
    "vhat_identity": _vhat_step("identity"),
    "vhat_simple": _vhat_step("simple"),
    "vhat_mle": _vhat_step("mle", ("n_subset", "max_iter", "seed"), needs_prior=True),
    "vhat_corshrink_xcondition": _vhat_step("vhat_corshrink_xcondition"),
    "vhat_simple_specific": _vhat_step("vhat_simple_specific"),
    "ud": _prior_step("ud"),
    "ud_unconstrained": _prior_step("ud_unconstrained"),
    "ed_bovy": _prior_step("ed_bovy"),
    "plot_U": Step("plot_U", lambda p: [naming.plot_file(p.cwd, p.data, p.name)],
                   lambda p: [(Path(p.data), None)],
                   ("max_comp", "to_cor", "tol", "remove_label", "name")),
    "mash_1": Step("mash_1", lambda p: [_mash_model(p)],
                   lambda p: [(Path(p.data), None), (Path(p.vhat_data), None),
                              (Path(p.prior_data), None)],
                   ("effect_model", "output_level"), "mash_fit"),
    "mash_2": Step("mash_2", lambda p: [naming.posterior_file(p.cwd, _prefix(p), p.effect_model)],
                   lambda p: [(Path(p.data), None), (Path(p.vhat_data), None), (_mash_model(p), "mash_1")],
                   ("effect_model",), "mash_fit"),
})


# mash_posterior: per-unit steps whose runner skips the units that are up to date
# (mashlib.protocol.posterior_workflow); their step-level inputs name every unit file there is
STEPS.update({
    "posterior": Step("posterior", lambda p: [_pw.manifest_file(p)], _pw.posterior_inputs,
                      _pw.POSTERIOR_STEP_PARAMS, "mash_posterior"),
    "posterior_contrast": Step("posterior_contrast",
                               lambda p: [_pw.manifest_file(p, "posterior_contrast"), _pw.summary_file(p)],
                               _pw.contrast_inputs, _pw.CONTRAST_STEP_PARAMS, "mash_posterior"),
    "posterior_contrast_plot": Step("posterior_contrast_plot", lambda p: [_pw.plot_file(p)],
                                    lambda p: [(_pw.summary_file(p), "posterior_contrast")], (), "mash_posterior"),
})


def workflow_steps(notebook: str, workflow: str, p: dict) -> list[str]:
    if notebook == "mash_posterior":
        return [workflow]
    if notebook == "mash_fit":
        return ["mash_1", "mash_2"] if p.compute_posterior else ["mash_1"]
    return [workflow]


# --------------------------------------------------------------------------- parameters


def _as_bool(name, v) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "t", "1", "yes"):
        return True
    if isinstance(v, str) and v.lower() in ("false", "f", "0", "no"):
        return False
    raise MashInputError(f"--{name.replace('_', '-')}: expected true/false, got {v!r}")


def resolve_params(notebook: str, workflow: str, params: dict[str, Any]) -> Options:
    """Fill defaults, check names and types, normalise values (``effect_model``, lists, paths).

    Returns the notebook's frozen :class:`~mashlib.protocol.params.Options` dataclass
    (``p.effect_model``; also readable as a mapping).

    Raises
    ------
    MashInputError
        Unknown notebook, workflow or parameter; a value of the wrong type.
    """
    if notebook not in PARAMS:
        raise MashInputError(f"unknown notebook {notebook!r}; valid: {', '.join(PARAMS)}")
    valid = list(WORKFLOWS[notebook])
    if not workflow:
        raise MashInputError(f"{notebook}: no workflow given; choose one of: {', '.join(valid)}")
    if workflow not in valid:
        import difflib
        close = difflib.get_close_matches(str(workflow), valid, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MashInputError(f"{notebook}: unknown workflow {workflow!r}{hint}; valid: {', '.join(valid)}")
    p = defaults(notebook)
    unknown = [k for k in params if k not in p and k != "workflow"]
    if unknown:
        import difflib
        close = difflib.get_close_matches(unknown[0], list(p), n=1)
        hint = f" (did you mean --{close[0].replace('_', '-')}?)" if close else ""
        raise MashInputError(f"{notebook}: unknown parameter {unknown[0]!r}{hint}")
    p.update({k: v for k, v in params.items() if k != "workflow"})
    for spec in PARAMS[notebook]:
        v, d = p[spec.name], spec.default
        if isinstance(d, bool):
            p[spec.name] = _as_bool(spec.name, v)
        elif isinstance(d, int):
            try:
                p[spec.name] = int(v)
            except (TypeError, ValueError):
                raise MashInputError(f"--{spec.name.replace('_', '-')}: expected an integer, got {v!r}") from None
        elif isinstance(d, float):
            try:
                p[spec.name] = float(v)
            except (TypeError, ValueError):
                raise MashInputError(f"--{spec.name.replace('_', '-')}: expected a number, got {v!r}") from None
        elif isinstance(d, list):
            # a comma/space list, or several values each of which may be one (--cells a,b c)
            p[spec.name] = [x for item in ([v] if isinstance(v, str) else v)
                            for x in str(item).replace(",", " ").split() if x]
        else:
            p[spec.name] = "" if v is None else str(v)
    if notebook == "mash_posterior":
        return options_class(notebook)(**_pw.finish_params(workflow, p))
    if not p["data"]:
        raise MashInputError(f"{notebook} {workflow}: --data is required (the mashr input RDS)")
    if p["numThreads"] < 0:
        raise MashInputError(f"--numThreads: expected a number of threads >= 0, got {p['numThreads']}")
    if p["mem"]:
        from ..stream import parse_memory
        parse_memory(p["mem"])
    # one cache per folder however it is spelled: every path absolute and resolved
    for k in ("data", "cwd", "vhat_data", "prior_data"):
        if p.get(k):
            p[k] = str(Path(p[k]).expanduser().resolve())
    p["effect_model"] = naming.effect_model(p["effect_model"])
    p["output_prefix"] = naming.prefix_of(p["data"], p["output_prefix"])
    if notebook == "mixture_prior":
        naming.vhat_method(p["vhat"])
        for c in p["mixture_components"]:
            if c not in naming.COMPONENTS:
                raise MashInputError(f"--mixture-components: unknown component {c!r}; valid: {', '.join(naming.COMPONENTS)}")
    else:
        for k in ("vhat_data", "prior_data"):
            if not p[k]:
                raise MashInputError(f"mash_fit: --{k.replace('_', '-')} is required (written by step 1, "
                                     f"mashlib run mixture_prior ed_bovy)")
    return options_class(notebook)(**p)


# --------------------------------------------------------------------------- signatures


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _step_params(step: Step, p: dict) -> dict:
    return {k: _jsonable(p[k]) for k in step.params}


def code_digest(source: str | None) -> str | None:
    """sha256 of a cell's code with comments and layout ignored (its AST); None if unknown."""
    if not source:
        return None
    import ast
    try:
        tree = ast.dump(ast.parse(source))
    except SyntaxError:
        tree = source
    return hashlib.sha256(tree.encode()).hexdigest()[:16]


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def why_rerun(step: Step, p: dict, inputs: list[Path], code: str | None = None) -> str | None:
    """``None`` when ``step`` is up to date, else the reason it (re)runs, in a few words.

    See the module docstring for the signature. ``code`` is :func:`code_digest` of the
    cell computing the step (not compared when unknown on either side).
    """
    outs = step.outputs(p)
    missing = [o for o in outs if not o.is_file()]
    if missing:
        return "no output yet" if len(missing) == len(outs) else f"output {missing[0].name} is missing"
    side = naming.sidecar_of(outs[0])
    if not side.is_file():  # a file made elsewhere: the SoS/make rule on mtimes
        newest = max(inputs, key=lambda i: i.stat().st_mtime, default=None)
        if newest is None or min(o.stat().st_mtime for o in outs) >= newest.stat().st_mtime:
            return None
        return f"input {newest.name} is newer than {outs[0].name} (made outside mashlib: no sidecar)"
    try:
        rec = json.loads(side.read_text())
    except (OSError, ValueError):
        return f"its sidecar {side.name} is unreadable"
    old, new = rec.get("parameters") or {}, _step_params(step, p)
    changed = [k for k in new if old.get(k) != new[k]]
    if changed:
        return "parameter " + ", ".join(f"{k} {_short(old.get(k))} -> {_short(new[k])}" for k in changed) + " changed"
    if code and rec.get("code") and rec["code"] != code:
        return f"the code of the {step.name} cell changed"
    recorded = rec.get("inputs") or {}
    current = {str(i): _sha256(i) for i in inputs}
    if sorted(recorded.values()) != sorted(current.values()):
        for path, digest in current.items():
            if digest not in recorded.values():
                how = "new content" if path in recorded else "another file than last time"
                return f"input {Path(path).name} changed ({how})"
        return "its inputs changed"
    # outputs by file name (older sidecars keyed them by the path as typed)
    made = {Path(k).name: v for k, v in (rec.get("outputs") or {}).items()}
    for o in outs:
        if made.get(o.name) != _sha256(o):
            return f"output {o.name} was modified after it was written"
    return None


def write_sidecar(step: Step, p: dict, inputs: list[Path], outputs: list[Path], elapsed: float,
                  code: str | None = None) -> Path:
    """Write ``<first output>.json``: version, step, parameters, code digest, input and output checksums."""
    from .._version import __version__
    rec = {
        "mashlib_version": __version__,
        "notebook": step.notebook,
        "step": step.name,
        "parameters": _step_params(step, p),
        "code": code,
        "all_parameters": {k: _jsonable(v) for k, v in dict(p).items()},
        "inputs": {str(i): _sha256(i) for i in inputs},
        "outputs": {Path(o).name: _sha256(Path(o)) for o in outputs},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 3),
    }
    side = naming.sidecar_of(outputs[0])
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(rec, indent=1) + "\n")
    return side


def missing_message(path: Path, step: Step, p: dict) -> str:
    """One line for an input that is not there and that no step produces."""
    if step.name.startswith("mash") and str(path) in (str(p.get("prior_data")), str(p.get("vhat_data"))):
        what = "--prior-data" if str(path) == str(p.get("prior_data")) else "--vhat-data"
        producer = "ed_bovy (or ud)" if what == "--prior-data" else "vhat_simple (or another vhat_*; ed_bovy runs it)"
        return (f"{what} {path}: file not found; it is written by step 1, "
                f"`mashlib run mixture_prior {producer.split()[0]} --data <mashr input> --cwd <dir>` "
                f"({producer}): run step 1 first")
    if step.name == "plot_U" and str(path).endswith(".prior.rds"):
        return (f"--data {path}: file not found; the prior is written by step 1 "
                "(`mashlib run mixture_prior ed_bovy ...`): run it first")
    return f"--data {path}: file not found; check the path"


def check_inputs(notebook: str, workflow: str, params: dict) -> dict:
    """Resolve parameters and check the inputs that no step can produce; return the params.

    This is what the CLI calls before starting papermill, so that bad input fails fast
    with one line and writes nothing.
    """
    p = resolve_params(notebook, workflow, params)
    check_writable_dir(p.cwd, "--cwd")
    for name in workflow_steps(notebook, workflow, p):
        step = STEPS[name]
        for path, producer in step.inputs(p):
            if producer is None and not path.is_file():
                raise MashInputError(missing_message(path, step, p))
    # a prior given by the user must be a prior (list(U, w)), not e.g. the mashr input
    if notebook == "mash_fit":
        steps.read_prior_U(p.prior_data)
    elif workflow == "plot_U" and not p.get("name"):
        steps.read_prior_U(p.data)
    return p


def plan_resolved(notebook: str, workflow: str, p: dict) -> list[str]:
    """The steps of ``workflow`` (producers first) for already resolved parameters."""
    order: list[str] = []

    def visit(name):
        for _, producer in STEPS[name].inputs(p):
            if producer is not None:
                visit(producer)
        if name not in order:
            order.append(name)
    for s in workflow_steps(notebook, workflow, p):
        visit(s)
    return order


def plan(notebook: str, workflow: str, params: dict) -> list[str]:
    """The steps ``workflow`` runs (producers first), without running them."""
    return plan_resolved(notebook, workflow, resolve_params(notebook, workflow, params))
