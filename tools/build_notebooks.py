"""Generate the protocol notebooks (development tool, not part of the wheel): ``python tools/build_notebooks.py``.

The workflow notebooks ``mixture_prior`` and ``mash_fit`` go to the package data
``mashlib/protocol/notebooks/`` (``mashlib run`` executes them); the driver
``mash_protocol`` and the vignette go to ``notebooks/`` (documents of the checkout).

The notebooks are thin: a tagged ``parameters`` cell generated from
:mod:`mashlib.protocol.params` (one parameter per line, help text as a ``#``
comment, which ``mashlib run NOTEBOOK -h`` reads back), calls into mashlib, and a
summary.  Regenerate after changing parameters; a test checks they are in sync.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mashlib.protocol.params import EXAMPLE_COMMANDS, PARAMS, WORKFLOWS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_NOTEBOOKS = ("mixture_prior.ipynb", "mash_fit.ipynb")

__all__ = ["build", "notebooks"]

_KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
           "language_info": {"name": "python"}}


def _param_cell(notebook: str, workflow_default: str | None):
    lines = []
    if workflow_default is not None:
        lines.append(f"workflow = {workflow_default!r}  # one of: {', '.join(WORKFLOWS[notebook])}")
    for p in PARAMS[notebook]:
        help_text = p.help + (" (empty: the shipped example)" if p.name == "data" else "")
        lines.append(f"{p.name} = {p.default!r}  # {help_text}")
    lines.append("interactive = True  # ipywidgets controls in JupyterLab; papermill runs pass False (static output)")
    return "\n".join(lines)


def _nb(cells):
    import nbformat
    nb = nbformat.v4.new_notebook(metadata=dict(_KERNEL))
    out = []
    for kind, src, *tags in cells:
        c = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = list(tags)
        out.append(c)
    nb.cells = out
    for i, c in enumerate(nb.cells):  # stable ids: regenerating gives identical files
        c["id"] = f"cell-{i}"
    return nb


def _workflow_table(notebook):
    return "\n".join(f"| `{w}` | {d} |" for w, d in WORKFLOWS[notebook].items())


MIXTURE_PRIOR_INTRO = """# Mixture prior (`mixture_prior`)

Estimates the covariance components of the MASH mixture prior and the residual
correlation of the summary statistics, then assembles the prior. A Python port of
xqtl-protocol's `mixture_prior.ipynb`: same workflows, parameters, defaults and file names;
`sos run pipeline/mixture_prior.ipynb WORKFLOW ...` becomes `mashlib run mixture_prior WORKFLOW ...`.

| workflow | output |
|---|---|
{table}

Steps chain as in SoS: a workflow whose inputs are missing first runs the steps that make
them (`ed_bovy` with the defaults runs `flash`, `flash_nonneg`, `pca`, `canonical` and
`vhat_simple`), and a step whose outputs are newer than its inputs is skipped. Every output
gets a JSON sidecar (`<file>.json`: mashlib version, parameters, input checksums).

`mashlib run mixture_prior -h` lists the parameters below with their help text.
"""

MASH_FIT_INTRO = """# MASH fit (`mash_fit`)

Fits the MASH model (mixture weights over the prior's covariances x a grid of scales) on the
**random** set, then, unless `compute_posterior=False`, computes posterior means, SDs, lfsr,
lfdr, NegativeProb and posterior covariances for the **strong** set. A port of
xqtl-protocol's `mash_fit.ipynb` (`sos run pipeline/mash_fit.ipynb mash ...` becomes
`mashlib run mash_fit mash ...`).

Outputs: `{cwd}/{prefix}.{EM}.mash_model.rds` = `list(mash_model, vhat_file, prior_file)` and
`{cwd}/{prefix}.{EM}.posterior.rds` = `list(PosteriorMean, PosteriorSD, lfdr, NegativeProb,
lfsr, PosteriorCov)` with rows `mash::mash::<variant>` and columns the conditions.
"""

RUN_CELL = """from mashlib import protocol
from mashlib.protocol.notebook import prepare, show

p = prepare({nb!r}, workflow, globals())
outputs = protocol.run_workflow({nb!r}, workflow, **p)"""


def mixture_prior_nb():
    return _nb([
        ("md", MIXTURE_PRIOR_INTRO.format(table=_workflow_table("mixture_prior"))),
        ("code", _param_cell("mixture_prior", "ed_bovy"), "parameters"),
        ("code", RUN_CELL.format(nb="mixture_prior")),
        ("md", "## Result\nA summary of what the workflow wrote (pick a component with the dropdown in JupyterLab)."),
        ("code", "show(p, workflow, outputs, interactive)"),
    ])


def mash_fit_nb():
    return _nb([
        ("md", MASH_FIT_INTRO),
        ("code", _param_cell("mash_fit", "mash"), "parameters"),
        ("code", RUN_CELL.format(nb="mash_fit")),
        ("md", "## Result\nModel log-likelihood, and per condition the number of strong-set effects with "
               "lfsr < 0.05 (pick a variant to see its posterior across conditions)."),
        ("code", "show(p, workflow, outputs, interactive)"),
    ])


DRIVER_INTRO = """# Mixture multivariate distribution estimate: the MASH miniprotocol

A thin driver that chains the two workflow notebooks, each step a papermill run (the same as
`mashlib run ...` on the command line; `mashlib demo` runs this notebook):

1. **`mixture_prior` / `ed_bovy`**: data-driven covariance components (FLASH, PCA) and canonical
   ones, refined by extreme deconvolution, weighted by a mash fit on the strong set.
2. **`mash_fit` / `mash`**: fit the mixture weights on the random set with that prior and the
   residual correlation `V_simple`, then posteriors for the strong set.
3. **`mixture_prior` / `plot_U`**: heatmaps of the prior components with weight > tol.

Inputs (`input/mash/`, synthetic: 34 tissue-like conditions, made by
`python -m mashlib.protocol.simulate protocol-example --out input/mash`):
`protocol_example.mashr_input.rds` (strong/random/null `.b/.s/.z` and `XtX`),
`protocol_example.EE.mash.rds`, `protocol_example.EE.V_simple.rds`. Swap in your own files
to run on real data. The same three steps on the command line:

```
{examples}
```
""".replace("{examples}", EXAMPLE_COMMANDS)

DRIVER_PARAMS = """input_dir = ""  # folder with the protocol_example.* inputs (empty: the shipped input/mash)
output_dir = ""  # output root; steps write to <output_dir>/mixture_prior and <output_dir>/mash_fit (empty: <repo>/output)
prefix = "protocol_example"  # prefix of the input files
interactive = True  # ipywidgets controls in JupyterLab; papermill runs pass False (static output)"""

DRIVER_SETUP = """import time
from pathlib import Path
from mashlib.protocol.notebook import execute_notebook, repo_root

inp = Path(input_dir or repo_root() / "input" / "mash")
out = Path(output_dir or repo_root() / "output")
mp, mf = out / "mixture_prior", out / "mash_fit"
prior = mp / f"{prefix}.EE.prior.rds"
timings = {}"""

DRIVER_STEP1 = """t0 = time.perf_counter()
execute_notebook("mixture_prior", dict(workflow="ed_bovy", output_prefix=prefix,
                 data=str(inp / f"{prefix}.mashr_input.rds"), cwd=str(mp), interactive=False),
                 mp / f"{prefix}.ed_bovy.ipynb")
timings["step 1 ed_bovy"] = time.perf_counter() - t0"""

DRIVER_STEP2 = """t0 = time.perf_counter()
execute_notebook("mash_fit", dict(workflow="mash", output_prefix=f"{prefix}_mash",
                 data=str(inp / f"{prefix}.EE.mash.rds"), vhat_data=str(inp / f"{prefix}.EE.V_simple.rds"),
                 prior_data=str(prior), effect_model="EE", compute_posterior=True, cwd=str(mf),
                 interactive=False),
                 mf / f"{prefix}_mash.mash.ipynb")
timings["step 2 mash"] = time.perf_counter() - t0"""

DRIVER_STEP3 = """t0 = time.perf_counter()
execute_notebook("mixture_prior", dict(workflow="plot_U", output_prefix=f"{prefix}_plots",
                 data=str(prior), cwd=str(mp), interactive=False),
                 mp / f"{prefix}_plots.plot_U.ipynb")
timings["step 3 plot_U"] = time.perf_counter() - t0
{k: round(v, 1) for k, v in timings.items()}"""

DRIVER_RESULTS = """from IPython.display import Image, display
from mashlib.io import read_rds
from mashlib.protocol.notebook import posterior_summary, show

pdf = mp / f"{prefix}.EE.prior.pdf"
print(f"prior heatmaps: {pdf} ({pdf.stat().st_size} bytes)")
display(Image(filename=str(pdf.with_suffix(".png"))))"""

DRIVER_POST = """post_file = mf / f"{prefix}_mash.EE.posterior.rds"
post = read_rds(post_file)
print(f"posterior: {post_file}: {', '.join(post)}; {post['PosteriorMean'].shape[0]} variants x "
      f"{post['PosteriorMean'].shape[1]} conditions")
posterior_summary(post)"""

DRIVER_EXPLORE = """p = dict(cwd=str(mf))
show(p, "mash", [mf / f"{prefix}_mash.EE.mash_model.rds", post_file], interactive, summary=False)"""


def driver_nb():
    return _nb([
        ("md", DRIVER_INTRO),
        ("code", DRIVER_PARAMS, "parameters"),
        ("code", DRIVER_SETUP),
        ("md", "## Step 1: mixture prior (`ed_bovy`)\nRuns `flash`, `flash_nonneg`, `pca`, `canonical` and "
               "`vhat_simple` first (skipped when up to date)."),
        ("code", DRIVER_STEP1),
        ("md", "## Step 2: MASH fit and posteriors (`mash`)"),
        ("code", DRIVER_STEP2),
        ("md", "## Step 3: prior heatmaps (`plot_U`)"),
        ("code", DRIVER_STEP3),
        ("md", "## Results\nThe prior components with weight > 1e-6, ordered by weight:"),
        ("code", DRIVER_RESULTS),
        ("md", "Per condition, the number of strong-set effects with lfsr < 0.05:"),
        ("code", DRIVER_POST),
        ("md", "One variant's posterior across conditions (a dropdown in JupyterLab):"),
        ("code", DRIVER_EXPLORE),
    ])


VIGNETTE = [
    ("md", """# Multivariate mixture priors for MASH: background

This vignette explains *why* the MASH protocol estimates a mixture prior the way it does. It
is a reference document with small live examples (a few seconds each); the runnable protocol
is `mash_protocol.ipynb` (driver), `mixture_prior.ipynb` and `mash_fit.ipynb`.

## 1. The MASH model

For effect (variant) $j$ measured in $R$ conditions we observe $\\hat b_j \\in \\mathbb{R}^R$ with
standard errors $\\hat s_j$. MASH (Urbut et al. 2019) assumes

$$\\hat b_j \\mid b_j \\sim N_R(b_j,\\; S_j V S_j), \\qquad S_j = \\mathrm{diag}(\\hat s_j),$$

$$b_j \\sim \\pi_0 \\delta_0 + \\sum_{k=1}^K \\sum_{l=1}^L \\pi_{kl}\\, N_R(0,\\; \\omega_l U_k).$$

* $V$ is the **residual correlation** between conditions (e.g. from sample overlap), estimated
  from null effects (`vhat_simple`: the correlation of null z-scores with all $|z| < 2$).
* $U_1..U_K$ are **covariance matrices** describing *patterns of sharing*; $\\omega_l$ is a grid
  of scales so each pattern can be small or large.
* The weights $\\pi$ are estimated by maximum likelihood (mix-SQP) on a *random* set of
  effects (unbiased for the genome), and posteriors are then computed for the *strong* set.

Marginally $\\hat b_j \\sim \\pi_0 N(0, S_j V S_j) + \\sum_{kl} \\pi_{kl} N(0, \\omega_l U_k + S_j V S_j)$:
the likelihood of each component is Gaussian, so fitting $\\pi$ is a convex problem.
"""),
    ("code", """import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import mashlib as ml

rng = np.random.default_rng(1)
R, J = 5, 600
conds = [f"c{i + 1}" for i in range(R)]
# three sharing patterns: equal effects, specific to c1, shared by c4-c5
patterns = {"shared": np.ones((R, R)), "c1 only": np.diag([1.0, 0, 0, 0, 0]),
            "c4+c5": np.outer([0, 0, 0, 1, 1], [0, 0, 0, 1, 1]).astype(float)}
which = rng.choice(4, size=J, p=[0.6, 0.2, 0.1, 0.1])   # 0 = null
B = np.zeros((J, R))
for k, U in enumerate(patterns.values(), start=1):
    rows = which == k
    B[rows] = rng.multivariate_normal(np.zeros(R), 4 * U + 1e-12 * np.eye(R), size=rows.sum())
Shat = np.full((J, R), 1.0)
Bhat = B + rng.standard_normal((J, R))
data = ml.mash_set_data(pd.DataFrame(Bhat, columns=conds), Shat)
print(f"{J} effects x {R} conditions; true pattern counts:", np.bincount(which))"""),
    ("md", """## 2. Why a mixture of covariances

A single covariance cannot describe effects that are shared by all conditions *and* effects
specific to one condition. The **canonical** matrices (identity, one singleton per condition,
equal effects, and three `simple_het` correlations) cover the obvious patterns; the
**data-driven** matrices learn the others from the strong effects:

* **PCA** (`pca`, `npc`): the top principal directions of the strong $\\hat B$ and their rank-`npc` sum `tPCA`.
* **FLASH** (`flash`, `flash_nonneg`): empirical-Bayes matrix factorisation; sparse factors often
  match groups of conditions (e.g. brain tissues). The non-negative version gives
  interpretable, same-sign sharing.
* **Extreme deconvolution** (`ed_bovy`, the default engine): starting from all of the above,
  refines each matrix by EM under the measurement-error model, so the refined $U_k$ describe
  the *true* effects $b_j$ rather than the noisy $\\hat b_j$.
* **Ultimate deconvolution** (`ud`, `ud_unconstrained`): the same idea with the `udr` updates
  (ED, or TED which needs i.i.d. z-scores: EZ only) from canonical and random initial matrices.

Below: mash with canonical matrices only, then with PCA + ED added. The data-driven fit has a
higher likelihood because the `c4+c5` pattern is not canonical."""),
    ("code", """strong = np.flatnonzero(np.abs(Bhat / Shat).max(axis=1) > 3)   # the "strong" set
U_c = ml.cov_canonical(data)
U_pca = ml.cov_pca(data, 2, subset=strong)
U_ed = ml.cov_ed(data, U_pca, subset=strong)
m_c = ml.mash(data, U_c, outputlevel=1)
m_dd = ml.mash(data, {**U_c, **U_ed}, outputlevel=1)
pd.DataFrame({"loglik": [m_c.loglik, m_dd.loglik]}, index=["canonical", "canonical + ED(PCA)"])"""),
    ("code", """w = ml.get_estimated_pi(m_dd)
w[w > 0.01].round(3).to_frame("weight")"""),
    ("md", """Each weight says how much of the data a pattern explains. The heaviest component as a
correlation heatmap (in JupyterLab, pick another one from the dropdown):"""),
    ("code", """from IPython.display import display
interactive = True  # False: static output only

def show_component(component):
    U = {**U_c, **U_ed}[component]
    d = np.sqrt(np.clip(np.diag(U), 1e-12, None))
    fig, ax = plt.subplots(figsize=(3.6, 3))
    im = ax.imshow(U / np.outer(d, d), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(R), conds); ax.set_yticks(range(R), conds)
    ax.set_title(f"{component}: w = {w[component]:.3f}")
    fig.colorbar(im, ax=ax)
    plt.show()

heavy = [k for k in w.sort_values(ascending=False).index if k != "null" and w[k] > 0.01]
show_component(heavy[0])          # static: what a papermill / nbval run keeps
if interactive:                   # JupyterLab: pick another component
    import ipywidgets as widgets
    dd, out = widgets.Dropdown(options=heavy, description="component"), widgets.Output()
    def _changed(change):
        with out:
            out.clear_output(wait=True)
            show_component(change["new"])
    dd.observe(_changed, names="value")
    display(widgets.VBox([dd, out]))"""),
    ("md", """## 3. EE versus EZ

`--effect-model` chooses the scale on which effects are exchangeable:

* **EE** (`alpha = 0`, default): $b_j \\sim$ mixture, independent of $\\hat s_j$. Effects with large
  standard errors are shrunk more.
* **EZ** (`alpha = 1`): the *z-scores* $b_j / \\hat s_j$ are exchangeable; the model is fitted to
  $\\hat z_j$ with $V$ as the error covariance, and posteriors are transformed back. EZ suits data
  where effect size scales with the standard error (e.g. very different sample sizes).

The log-likelihoods are comparable (mash adds the Jacobian term for EZ), so the data can decide:"""),
    ("code", """data_ez = ml.mash_set_data(pd.DataFrame(Bhat, columns=conds), Shat * rng.uniform(0.5, 2, size=(J, 1)), alpha=1)
data_ee = ml.mash_set_data(pd.DataFrame(Bhat, columns=conds), Shat * rng.uniform(0.5, 2, size=(J, 1)), alpha=0)
print("EE loglik:", round(ml.mash(data_ee, U_c, outputlevel=1).loglik, 2))
print("EZ loglik:", round(ml.mash(data_ez, U_c, outputlevel=1).loglik, 2))"""),
    ("md", """## 4. The residual correlation V

Ignoring correlated noise (e.g. shared samples between tissues) makes noise look like shared
effects. The protocol offers `vhat_identity` (no correlation), `vhat_simple` (correlation of
null z-scores with $|z|<2$), `vhat_mle` (EM given the prior), `vhat_corshrink_xcondition`
(adaptive shrinkage of the pairwise correlations) and `vhat_simple_specific` (nearest
correlation matrix of the null z covariance). A prior is always fitted with the chosen V
(`V_simple` when `vhat = mle`, because the EM estimate itself needs a prior).

## 5. From prior to posterior

`mash_fit` fits $\\pi$ on the random set, then computes for each strong effect the posterior
mean and SD, the local false sign rate (lfsr: probability of the wrong sign) and the lfdr.
An effect is significant in a condition when lfsr < 0.05; sharing between conditions is
summarised by `get_pairwise_sharing`."""),
    ("code", """m = ml.mash(data, {**U_c, **U_ed})
lfsr = ml.get_lfsr(m)
print("significant (lfsr < 0.05) per condition:")
(lfsr < 0.05).sum()"""),
]


def vignette_nb():
    return _nb(VIGNETTE)


def notebooks() -> dict:
    """File name -> notebook object."""
    return {"mixture_prior.ipynb": mixture_prior_nb(), "mash_fit.ipynb": mash_fit_nb(),
            "mash_protocol.ipynb": driver_nb(), "multivariate_mixture_vignette.ipynb": vignette_nb()}


def destination(name: str, root=ROOT) -> Path:
    """Where notebook ``name`` lives: package data for the workflow notebooks, else ``notebooks/``."""
    root = Path(root)
    return (root / "mashlib" / "protocol" / "notebooks" / name if name in PACKAGE_NOTEBOOKS
            else root / "notebooks" / name)


def build(root=ROOT) -> list[Path]:
    """Write the four notebooks under ``root`` (the checkout by default)."""
    import nbformat
    out = []
    for name, nb in notebooks().items():
        dest = destination(name, root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(dest))
        out.append(dest)
    return out


if __name__ == "__main__":
    for p in build(sys.argv[1] if len(sys.argv) > 1 else ROOT):
        print(p)
