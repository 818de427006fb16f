"""Fences of the package layout: the public API, the layers and the import graph.

* every public name of ``import mashlib`` resolves, with the parameters it had before the
  re-layout (``tests/data/public_api.json``, taken from the flat layout); same-named functions
  (``mash``, ``ash``, ``ebnm``, ``mixsqp``, ``cov_flash``) stay functions after every module is imported;
* each module imports only its own layer or lower (an AST check of module-level and
  function-local imports), never a private name from another wing, and the package has no
  import cycle.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest

import mashlib as ml

PKG = Path(ml.__file__).parent
SNAPSHOT = json.loads((Path(__file__).parents[1] / "data" / "public_api.json").read_text())

#: lower number = lower layer; a module may import its own layer or lower
LAYERS = {
    "_version": 0, "_log": 0, "_errors": 0, "_atomic": 0, "_blas": 0, "_validation": 0, "_palette": 0, "datasets": 0,
    "io": 1, "eb": 1,
    "ebmf": 2, "model": 2,
    "stream": 3, "prior": 3, "vhat": 3,
    "plots": 4,
    "protocol": 5,
    "cli": 6, "__main__": 6, "__init__": 6,
}


def _modules():
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(["mashlib", *parts])] = (path, is_pkg)
    return out


MODULES = _modules()


def _wing(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(mod: str):
    """(target module, imported names, line) for every mashlib import in ``mod``, at any depth."""
    path, is_pkg = MODULES[mod]
    pkg = mod if is_pkg else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mashlib"):
                continue
            names = [a.name for a in node.names]
            submods = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            yield (target if len(submods) < len(names) else None), names, node.lineno
            for s in submods:
                yield s, [], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mashlib"):
                    yield a.name, [], node.lineno


def test_public_names_resolve_with_their_parameters():
    assert set(SNAPSHOT) <= set(ml.__all__)
    for name, info in SNAPSHOT.items():
        value = getattr(ml, name)
        kind = "class" if inspect.isclass(value) else ("function" if callable(value) else type(value).__name__)
        assert kind == info["kind"], name
        if info["signature"]:
            new = inspect.signature(value)
            for p in _param_names(info["signature"]):
                assert p in new.parameters, f"{name}: parameter {p!r} is gone"


def _param_names(sig: str):
    """Parameter names of a signature string '(a, b=1, *, c=None, **kw) -> T'."""
    inner = sig[1:sig.rindex(")")] if ")" in sig else sig
    depth, cur, names = 0, "", []
    for ch in inner + ",":
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            tok = cur.strip()
            cur = ""
            if tok and tok not in ("*", "/"):
                names.append(tok.lstrip("*").split("=")[0].split(":")[0].strip())
            continue
        cur += ch
    return names


def test_same_named_functions_stay_functions_after_every_import():
    for info in pkgutil.walk_packages(ml.__path__, "mashlib."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    for name in ("mash", "ash", "ebnm", "mixsqp", "cov_flash"):
        assert inspect.isfunction(getattr(ml, name)), name
    from mashlib.eb import ebnm
    assert inspect.isfunction(ebnm.ebnm_point_normal) and inspect.isfunction(ebnm.ebnm)


def test_wings_are_reachable():
    for wing in ml.WINGS:
        assert inspect.ismodule(getattr(ml, wing)), wing


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_respect_layers_and_privacy(mod):
    wing = _wing(mod)
    for target, names, line in _imports(mod):
        if target is None:
            continue
        twing = _wing(target)
        assert LAYERS[twing] <= LAYERS[wing], \
            f"{mod}:{line} imports {target} (layer {twing} above {wing})"
        if twing != wing:
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{mod}:{line} imports private {private} from another wing ({target})"


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_one_validation_vocabulary():
    """Choices and square matrices are checked by the shared validators, with the same messages."""
    import numpy as np

    with pytest.raises(ml.MashInputError, match=r"prior_family='point_nromal' is not a known prior family "
                                                r"\(did you mean 'point_normal'\?\)"):
        ml.ebnm(np.ones(3), 1.0, prior_family="point_nromal")
    with pytest.raises(ml.MashInputError, match=r"must be a non-empty square matrix; got shape \(2, 3\)"):
        ml.near_pd(np.ones((2, 3)))
    with pytest.raises(ml.MashInputError, match=r"is 2 x 2 but the data have R = 3"):
        ml.prior.validate_components({"a": np.eye(2)}, R=3)
