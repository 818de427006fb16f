"""Generate the protocol notebooks (development tool, not part of the wheel): ``python tools/build_notebooks.py``.

The workflow notebooks ``mixture_prior``, ``mash_fit`` and ``mash_posterior`` go to the package data
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
sys.path.insert(0, str(Path(__file__).resolve().parent))    # tools/posterior_notebook.py
PACKAGE_NOTEBOOKS = ("mixture_prior.ipynb", "mash_fit.ipynb", "mash_posterior.ipynb")

__all__ = ["build", "notebooks"]

_KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
           "language_info": {"name": "python"}}


def _param_cell(notebook: str, workflow_default: str | None):
    lines = []
    if workflow_default is not None:
        lines.append(f"workflow = {workflow_default!r}  # one of: {', '.join(WORKFLOWS[notebook])}")
    for p in PARAMS[notebook]:
        lines.append(f"{p.name} = {p.default!r}  # {p.help}")
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


def _cmd(notebook, workflow, extra=""):
    """The SoS example command of a step, as `mashlib run`."""
    if notebook == "mixture_prior" and workflow == "plot_U":
        return ("mashlib run mixture_prior plot_U --output-prefix protocol_example_plots \\\n"
                "    --data output/mixture_prior/protocol_example.EE.prior.rds --cwd output/mixture_prior")
    return (f"mashlib run mixture_prior {workflow} --output-prefix protocol_example \\\n"
            f"    --data input/mash/protocol_example.mashr_input.rds --cwd output/mixture_prior{extra}")


def _section(step, title, text, compute, show=True, command=None, notebook="mixture_prior"):
    """One workflow section: a description, the compute cell, the result."""
    tag = f"section:{step}"
    md = f"{title}\n\n{text.strip()}\n"
    if command is None:
        command = _cmd(notebook, step)
    if command:
        md += f"\n```bash\n{command}\n```\n"
    cells = [("md", md, tag), ("code", compute.strip(), tag, "compute")]
    if show:
        cells.append(("code", "protocol.show(s)", tag))
    return cells


SETUP = """import numpy as np
import mashlib as ml
from mashlib import protocol

p = protocol.prepare({nb!r}, workflow, globals())   # resolve and check the parameters, plan the steps"""

HOW_IT_RUNS = """
## How this notebook runs

One section per workflow, each a few library calls: `s = protocol.step(name, p)` names the
outputs as the SoS pipeline does and decides whether the step has to run (`s.needed`): a
step is skipped when its outputs were made from the same inputs (by content), parameters and
code (the JSON sidecar `<output>.json` records them), and when it reruns it says why. A
missing input is first made by the step that produces it. `s.save(obj)` writes the
R-readable RDS atomically with its sidecar; `protocol.show(s)` shows the result (tables and
heatmaps, and dropdowns in JupyterLab).

* **JupyterLab**: set `workflow` (and the other parameters) in the parameters cell and Run
  All: the sections of that workflow and of the steps it needs run, the others say
  `skipped`. You can change a section's code and rerun its cell: the step reruns because
  its code changed. With `data` empty the notebook runs the shipped example into
  `output/{nb}` of the checkout (never overwriting results made there with other inputs
  or parameters: it then writes to `output/scratch/{nb}` and says so).
* **Command line**: `mashlib run {nb} WORKFLOW --option value ...` runs this notebook with
  papermill, keeping only the sections the workflow needs, in dependency order, and keeps
  the executed copy (`{{cwd}}/{{prefix}}.{{workflow}}.ipynb`, figures included) next to the
  outputs. It prints one line when each step starts and ends and the engines' progress;
  `--quiet` silences it. `--no-notebook` runs the same cells in-process.
* **Python**: `mashlib.protocol.{first}(data=..., cwd=...)` runs the same cells in-process.
"""

MIXTURE_PRIOR_INTRO = """# Mixture prior estimation for MASH (`mixture_prior`)

This notebook computes a data-driven prior mixture (a set of covariance matrices) for a
MASH model. It applies factor analyses (FLASH, PCA), canonical covariances, residual
correlation ($\\hat V$) estimation, and empirical Bayes deconvolution (extreme deconvolution
`ed_bovy`, ultimate deconvolution `ud`) to build the prior, then plots the covariance
patterns. A Python port of xqtl-protocol's `mixture_prior.ipynb`: the same workflows,
parameters, defaults and file names; `sos run pipeline/mixture_prior.ipynb WORKFLOW ...`
becomes `mashlib run mixture_prior WORKFLOW ...`.

## Description

The pipeline proceeds in four stages: (1) factor analyses (`flash`, `flash_nonneg`, `pca`,
`canonical`) give candidate covariance structures from the **strong** effects; (2) residual
correlation estimation (`vhat_*`) estimates the error correlation $\\hat V$ from the **null**
set; (3) mixture estimation (`ed_bovy`, `ud`, `ud_unconstrained`) refines the candidates and
weighs them into the prior; (4) `plot_U` draws the prior's components.

## Input

- `data`: the mashr input RDS, a list of variants x conditions matrices `strong.b/.s/.z`,
  `random.b/.s/.z`, `null.b/.s/.z` (and `XtX`), e.g. made upstream by `extract_effects`.
- `output_prefix`: prefix of the output files (default: the basename of `data`).
- `effect_model`: `EE` (exchangeable effects) or `EZ` (exchangeable z-scores).
- `vhat`: the residual correlation the prior is fitted with (`simple` by default).

## Output

| workflow | output |
|---|---|
{table}

## Example commands (the shipped example)

```bash
{commands}
mashlib run mixture_prior -h          # every workflow and parameter, with defaults and help
```

On the shipped example (100 strong x 34 conditions) `ed_bovy` with the defaults (flash,
flash_nonneg, pca, canonical, vhat_simple first) is the long step; `plot_U` takes seconds.
""" + HOW_IT_RUNS

MIXTURE_PRIOR_SECTIONS = [
    _section("flash", "# Factor analyses\n\nCandidate covariance structures from the strong effects.\n\n"
             "## `flash`: FLASH factors",
             """Empirical Bayes matrix factorisation of the strong $\\hat B$ (flashier, via mashr's
`cov_flash`): each factor $f_k$ gives a rank-one covariance `FLASH_default_k` $= f_k f_k^T$,
and all factors together `tFLASH_default`. No factor on small data gives an empty list.""",
             """s = protocol.step("flash", p)
if s.needed:
    inp, data = protocol.strong_data(p)             # strong.b/.s: NA b -> 0, NA s -> 1000, alpha of the effect model
    with s.progress():
        U = ml.cov_flash(data, factors="default", verbose=1)
    s.save(protocol.with_dimnames(U, inp.conditions))   # condition names as dimnames, as R writes them"""),
    _section("flash_nonneg", "## `flash_nonneg`: non-negative FLASH factors",
             """As `flash` with non-negative factors (`factors = "nonneg"`): interpretable same-sign
sharing patterns (e.g. brain tissues). Named `FLASH_nonneg_k` and `tFLASH_nonneg`.""",
             """s = protocol.step("flash_nonneg", p)
if s.needed:
    inp, data = protocol.strong_data(p)
    with s.progress():
        U = ml.cov_flash(data, factors="nonneg", verbose=1)
    s.save(protocol.with_dimnames(U, inp.conditions))"""),
    _section("pca", "## `pca`: principal components",
             """The top `npc` principal directions $w_k$ of the strong $\\hat B$: `PCA_k` $= w_k w_k^T$
and their sum weighted by the squared singular values, `tPCA` (mashr's `cov_pca`).""",
             """s = protocol.step("pca", p)
if s.needed:
    inp, data = protocol.strong_data(p)
    U = ml.cov_pca(data, p.npc)                  # PCA_1 .. PCA_npc, tPCA
    s.save(protocol.with_dimnames(U, inp.conditions))"""),
    _section("canonical", "## `canonical`: canonical covariances",
             """The obvious patterns (mashr's `cov_canonical`): `identity` (independent effects), one
`singletons_r` per condition (condition-specific), `equal_effects` (shared, equal) and
`simple_het_1..3` (shared with correlation 0.25, 0.5, 0.75).""",
             """s = protocol.step("canonical", p)
if s.needed:
    inp, data = protocol.strong_data(p)
    s.save(protocol.bare(ml.cov_canonical(data)))   # no dimnames, as R"""),
    _section("vhat_identity", "# Residual correlation $\\hat V$\n\nCorrelated noise between conditions "
             "(e.g. shared samples) would look like shared effects; $\\hat V$ models it in "
             "$\\hat b_j \\sim N(b_j, S_j V S_j)$.\n\n## `vhat_identity`: no correlation",
             """$\\hat V = I$ (no sample overlap between conditions).""",
             """s = protocol.step("vhat_identity", p)
if s.needed:
    inp = protocol.load_input(p.data, require=())
    s.save(np.eye(len(inp.conditions)))             # diag(R), no dimnames"""),
    _section("vhat_simple", "## `vhat_simple`: correlation of null z-scores (default)",
             """mashr's `estimate_null_correlation_simple` on the **null** set: the correlation of the
z-scores of the effects with all $|z| < 2$.""",
             """s = protocol.step("vhat_simple", p)
if s.needed:
    inp = protocol.load_input(p.data, require=("null",))
    V = ml.vhat_simple(inp.null.b, inp.null.s, alpha=p.alpha)   # z_thresh = 2
    s.save(protocol.with_dimnames(V, inp.conditions))"""),
    _section("vhat_corshrink_xcondition", "## `vhat_corshrink_xcondition`: adaptive shrinkage of the null correlations",
             """CorShrink (halfuniform adaptive shrinkage of the Fisher-transformed pairwise
correlations) of the null z-scores.""",
             """s = protocol.step("vhat_corshrink_xcondition", p)
if s.needed:
    inp = protocol.load_input(p.data, require=("null",))
    V = ml.vhat_corshrink(inp.null.b / inp.null.s)
    s.save(protocol.with_dimnames(V, inp.conditions))"""),
    _section("vhat_simple_specific", "## `vhat_simple_specific`: nearest correlation matrix",
             """`nearPD(cov(null z), corr = TRUE)`: the nearest correlation matrix of the null
z-score covariance (Higham 2002).""",
             """s = protocol.step("vhat_simple_specific", p)
if s.needed:
    inp = protocol.load_input(p.data, require=("null",))
    V = ml.vhat_simple_specific(inp.null.b / inp.null.s)
    s.save(protocol.with_dimnames(V, inp.conditions))"""),
    _section("ud", "# Mixture prior\n\nThe candidates, refined under the measurement-error model and "
             "weighted by a mash fit on the strong set, with the chosen $\\hat V$ (`V_simple` when "
             "`vhat = mle`: V_mle itself needs a prior).\n\n## `ud`: ultimate deconvolution (udr, ED updates)",
             """udr's `ud_init` (canonical `indep`/`equal` + 50 random Wishart matrices, `seed`) and
`ud_fit` with ED updates; the component files are checked but, as in pecotmr, not used as
initial matrices.""",
             """s = protocol.step("ud", p)
if s.needed:
    inp, data = protocol.strong_data(p, V=protocol.read_vhat(protocol.prior_vhat_file(p)))
    U0 = protocol.read_components(p)
    s.announce(f"ud_fit: {data.n_effects} strong rows x {data.n_conditions} conditions, up to 1000 iterations")
    with s.progress():
        prior = ml.ud(data, protocol.bare(U0), seed=p.seed, verbose=True)
    s.save(protocol.prior_object(prior))           # list(U, w, loglik)"""),
    _section("ud_unconstrained", "## `ud_unconstrained`: ultimate deconvolution (TED updates)",
             """As `ud` with TED updates, which need i.i.d. data: z-scores (`effect_model = "EZ"`).""",
             """s = protocol.step("ud_unconstrained", p)
if s.needed:
    inp, data = protocol.strong_data(p, V=protocol.read_vhat(protocol.prior_vhat_file(p)))
    U0 = protocol.read_components(p)
    with s.progress():
        prior = ml.ud_unconstrained(data, protocol.bare(U0), seed=p.seed, verbose=True)
    s.save(protocol.prior_object(prior))"""),
    _section("ed_bovy", "## `ed_bovy`: extreme deconvolution (the default engine)",
             """Bovy et al.'s extreme deconvolution (mashr's `cov_ed`) refines every candidate by EM
under $\\hat b_j \\sim N(0, U_k + S_j V S_j)$, so the refined `ED_<name>` describe the true
effects rather than the noisy estimates; the prior is $U$ = candidates + refinements and $w$
the mash mixture weights on the strong set.""",
             """s = protocol.step("ed_bovy", p)
if s.needed:
    inp, data = protocol.strong_data(p, V=protocol.read_vhat(protocol.prior_vhat_file(p)))
    U0 = protocol.read_components(p)                # the mixture_components files, concatenated in order
    s.announce(f"extreme deconvolution: {data.n_effects} strong rows x {len(U0)} components x "
               f"{data.n_conditions} conditions")
    with s.progress():
        prior = ml.ed_bovy(data, protocol.bare(U0), verbose=True,   # U = c(U0, ED_U0), w = mash weights
                           accelerate=p.ed_accelerate)      # SQUAREM (--no-ed-accelerate: R's EM)
    s.save(protocol.prior_object(prior, U0, inp.conditions))   # list(U, w, loglik); ED_* named by condition"""),
    _section("vhat_mle", "## `vhat_mle`: EM estimate given the prior",
             """mashr's `mash_estimate_corr_em` on (a `seed`ed subset of `n_subset` rows of) the
**random** set, given the prior's $U$, at most `max_iter` EM iterations. It needs the prior
first (made with `V_simple`).""",
             """s = protocol.step("vhat_mle", p)
if s.needed:
    U, _ = protocol.read_prior_U(protocol.prior_file(p))
    inp = protocol.load_input(p.data, require=("random",))
    with s.progress():
        V = ml.vhat_mle(inp.random.b, inp.random.s, protocol.bare(U), alpha=p.alpha,
                        n_subset=p.n_subset, max_iter=p.max_iter, seed=p.seed)
    s.save(protocol.with_dimnames(V, inp.conditions))"""),
    _section("plot_U", "# Plot patterns of sharing\n\n## `plot_U`: heatmaps of the prior components",
             """One heatmap per component with weight > `tol`, ordered by weight (`U / max(diag U)`,
or correlations with `to_cor`), as a PDF named after `data` (and a 150-dpi PNG per page).
Here `data` is a prior RDS written above.""",
             """s = protocol.step("plot_U", p)
if s.needed:
    ml.plot_U(p.data, max_comp=p.max_comp, to_cor=p.to_cor, tol=p.tol,
              remove_label=p.remove_label, name=p.name, output=s.output, png=True)
    s.save()                                        # the PDF (and PNGs) written by plot_U"""),
]

MASH_FIT_INTRO = """# MASH analysis with a data-driven prior (`mash_fit`)

Fits the MASH model with the prior made by `mixture_prior`: the mixture weights over the
prior's covariances x a grid of scales are learned on the **random** set (unbiased for the
genome), then, unless `compute_posterior = False`, posteriors are computed for the
**strong** set as in Urbut et al. 2019. A port of xqtl-protocol's `mash_fit.ipynb`
(`sos run pipeline/mash_fit.ipynb mash ...` becomes `mashlib run mash_fit mash ...`).

## Input

- `data`: the MASH-format RDS (the mashr input after preprocessing: NA b -> 0, NA s -> 1000).
- `vhat_data`: the residual correlation $\\hat V$ (a `vhat_*` output of `mixture_prior`).
- `prior_data`: the prior RDS `list(U, w, loglik)` of `mixture_prior` (`ed_bovy`, `ud`).

## Output

- `{{cwd}}/{{prefix}}.{{EM}}.mash_model.rds` = `list(mash_model, vhat_file, prior_file)`: the fitted
  model (mashr's `"mash"` object: `fitted_g` with the weights `pi`, `loglik`, ...).
- `{{cwd}}/{{prefix}}.{{EM}}.posterior.rds` = `list(PosteriorMean, PosteriorSD, lfdr, NegativeProb,
  lfsr, PosteriorCov)` for the strong set, rows `mash::mash::<variant>`, columns the
  conditions.

## Example command (the shipped example)

```bash
{command}
mashlib run mash_fit -h
```
""" + HOW_IT_RUNS

MASH_FIT_SECTIONS = [
    _section("mash_1", "## `mash_1`: fit the mixture weights on the random set",
             """mashr's `mash(data, U, outputlevel)`: the likelihood of every random-set effect under
every covariance x grid scale, then the weights $\\pi$ by mix-SQP (with mashr's null
weight). Main references: the mashr vignettes (eQTL outline, FLASH prior).""",
             """s = protocol.step("mash_1", p)
if s.needed:
    U, _ = protocol.read_prior_U(p.prior_data)   # prior$U of mixture_prior
    V = protocol.read_vhat(p.vhat_data)
    inp = protocol.load_input(p.data, require=("random",))
    data = ml.mash_set_data(inp.random.b, inp.random.s, alpha=p.alpha, V=V, zero_Bhat_Shat_reset=1000)
    s.announce(f"mash: {data.n_effects} random rows x {len(U)} covariances x {data.n_conditions} conditions")
    with s.progress():
        m = ml.mash(data, protocol.bare(U), outputlevel=p.output_level, memory_bytes=p.memory_bytes,
                    verbose=True)
    labelled = [k for k, u in U.items() if hasattr(u, "columns")]   # the prior matrices R keeps dimnames on
    s.save({"mash_model": m.to_r(list(inp.random.b.index), inp.conditions, labelled),
            "vhat_file": p.vhat_data, "prior_file": p.prior_data})""",
             command=""),
    _section("mash_2", "## `mash_2`: posteriors for the strong set",
             """The fitted model applied to the strong set (mashr's `mash_compute_posterior_matrices`):
posterior mean and SD, lfsr (the probability that the sign is wrong), lfdr, NegativeProb and
the posterior covariances. An effect is significant in a condition when its lfsr < 0.05.
Skipped with `compute_posterior = False`.""",
             """s = protocol.step("mash_2", p)
if s.needed:
    g = protocol.read_fitted_g(protocol.mash_model_file(p), alpha=p.alpha)   # fitted_g of mash_1
    V = protocol.read_vhat(p.vhat_data)
    inp = protocol.load_input(p.data, require=("strong",))
    data = ml.mash_set_data(inp.strong.b, inp.strong.s, alpha=p.alpha, V=V, zero_Bhat_Shat_reset=1000)
    post = ml.mash_compute_posterior_matrices(g, data, output_posterior_cov=True, memory_bytes=p.memory_bytes)
    s.save(ml.posterior_to_r(post, list(inp.strong.b.index), inp.conditions))""",
             command=""),
]


def _mixture_prior_commands():
    steps = ["flash", "flash_nonneg", "pca", "canonical", "vhat_identity", "vhat_simple", "vhat_mle",
             "vhat_corshrink_xcondition", "vhat_simple_specific", "ud", "ud_unconstrained", "ed_bovy", "plot_U"]
    extra = {"ud_unconstrained": " --effect-model EZ"}
    return "\n".join(_cmd("mixture_prior", w, extra.get(w, "")) for w in steps)


def mixture_prior_nb():
    intro = MIXTURE_PRIOR_INTRO.format(table=_workflow_table("mixture_prior"), commands=_mixture_prior_commands(),
                                       nb="mixture_prior", first="ed_bovy")
    cells = [("md", intro), ("code", _param_cell("mixture_prior", "ed_bovy"), "parameters"),
             ("code", SETUP.format(nb="mixture_prior"), "setup")]
    for sec in MIXTURE_PRIOR_SECTIONS:
        cells += sec
    return _nb(cells)


def mash_fit_nb():
    command = EXAMPLE_COMMANDS.split("\nmashlib run mixture_prior plot_U")[0].split("\n", 2)[2]
    intro = MASH_FIT_INTRO.format(command=command.replace("    ", "    ", 1), nb="mash_fit", first="mash")
    cells = [("md", intro), ("code", _param_cell("mash_fit", "mash"), "parameters"),
             ("code", SETUP.format(nb="mash_fit"), "setup")]
    for sec in MASH_FIT_SECTIONS:
        cells += sec
    return _nb(cells)


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
from mashlib import protocol
from mashlib.protocol.notebook import repo_root, run_notebook, run_notebooks

inp = Path(input_dir or repo_root() / "input" / "mash")
out = Path(output_dir or repo_root() / "output")
mp, mf = out / "mixture_prior", out / "mash_fit"
prior = mp / f"{prefix}.EE.prior.rds"
timings = {}"""

DRIVER_STEP1 = """t0 = time.perf_counter()
run_notebook("mixture_prior", "ed_bovy", dict(output_prefix=prefix, data=str(inp / f"{prefix}.mashr_input.rds"),
                                              cwd=str(mp)))
timings["step 1 ed_bovy"] = time.perf_counter() - t0"""

DRIVER_STEPS23 = """t0 = time.perf_counter()
(fit_nb, timings["step 2 mash"]), (plots_nb, timings["step 3 plot_U"]) = run_notebooks([
    ("mash_fit", "mash", dict(output_prefix=f"{prefix}_mash", data=str(inp / f"{prefix}.EE.mash.rds"),
                              vhat_data=str(inp / f"{prefix}.EE.V_simple.rds"), prior_data=str(prior),
                              effect_model="EE", compute_posterior=True, cwd=str(mf))),
    ("mixture_prior", "plot_U", dict(output_prefix=f"{prefix}_plots", data=str(prior), cwd=str(mp))),
])
timings["steps 2 + 3"] = time.perf_counter() - t0
{k: round(v, 1) for k, v in timings.items()}"""

DRIVER_RESULTS = """from IPython.display import Image, display

pdf = mp / f"{prefix}.EE.prior.pdf"
print(f"prior heatmaps: {pdf}")
display(Image(filename=str(pdf.with_suffix(".png")), width=900))"""

DRIVER_POST = """post_file = mf / f"{prefix}_mash.EE.posterior.rds"
protocol.results(prior, post_file, interactive)"""


def driver_nb():
    return _nb([
        ("md", DRIVER_INTRO),
        ("code", DRIVER_PARAMS, "parameters"),
        ("code", DRIVER_SETUP),
        ("md", "## Step 1: mixture prior (`ed_bovy`)\nRuns `flash`, `flash_nonneg`, `pca`, `canonical` and "
               "`vhat_simple` first (each skipped when up to date); the lines below are the workflow "
               "notebook's progress (one line per step start and end)."),
        ("code", DRIVER_STEP1),
        ("md", "## Steps 2 and 3: MASH fit and posteriors (`mash`), prior heatmaps (`plot_U`)\n"
               "Both read the prior of step 1 and neither reads the other's outputs, so they run side "
               "by side (`run_notebooks`: each in its own process, as `mashlib run` would, one at a "
               "time on a single CPU); their progress lines interleave.\n\n"
               "* **`mash_fit` / `mash`**: the mixture weights on the random set with that prior and "
               "`V_simple`, then posteriors for the strong set.\n"
               "* **`mixture_prior` / `plot_U`**: heatmaps of the prior components with weight > tol."),
        ("code", DRIVER_STEPS23),
        ("md", "## Results\n\nThe prior components with weight > 1e-6, ordered by weight (the first "
               "page of `plot_U`'s PDF):"),
        ("code", DRIVER_RESULTS),
        ("md", """The prior's weights, then for the strong set: significant effects (lfsr < 0.05) per condition,
the pairwise sharing of effects by magnitude (mashr's `get_pairwise_sharing`: of the effects
significant in either of two conditions, the fraction whose posterior means are within a
factor 2 of each other), and one variant's posterior across conditions (mashr's
`mash_plot_meta`: posterior mean +/- 1.96 sd; pick another variant in JupyterLab)."""),
        ("code", DRIVER_POST),
    ])


VIGNETTE = [
    ("md", """# MASH with data-driven covariances: a walk-through

This vignette follows mashr's own (*Introduction to mash*, *data-driven covariances*,
*estimating the correlation*): simulated data -> condition-by-condition analysis -> strong
set -> residual correlation $V$ -> data-driven covariances (PCA refined by ED) -> fit on a
random set -> posteriors on the strong set -> how to read the lfsr, sharing and meta plots,
and EE versus EZ on the same data. Every cell runs in seconds; the protocol itself (the same
steps on files, as the SoS pipeline) is `mash_protocol.ipynb` (driver), `mixture_prior.ipynb`
and `mash_fit.ipynb`.

## The MASH model

For effect (variant) $j$ measured in $R$ conditions we observe $\\hat b_j \\in \\mathbb{R}^R$ with
standard errors $\\hat s_j$. MASH (Urbut et al. 2019) assumes

$$\\hat b_j \\mid b_j \\sim N_R(b_j,\\; S_j V S_j), \\qquad S_j = \\mathrm{diag}(\\hat s_j),$$

$$b_j \\sim \\pi_0 \\delta_0 + \\sum_{k=1}^K \\sum_{l=1}^L \\pi_{kl}\\, N_R(0,\\; \\omega_l U_k).$$

$V$ is the residual correlation between conditions (e.g. from shared samples), $U_1..U_K$
are covariance matrices describing patterns of sharing, $\\omega_l$ a grid of scales, and
the weights $\\pi$ are estimated by maximum likelihood (mix-SQP). Marginally every component is
Gaussian, $N(0, \\omega_l U_k + S_j V S_j)$, so fitting $\\pi$ is a convex problem.

## 1. Simulated data (as mashr's `simple_sims`, with correlated noise)

2,000 effects in 5 conditions: 500 null, 500 independent across conditions, 500 specific to
condition 1 and 500 equal in all conditions (effects of standard deviation 3, standard errors
1); the noise has correlation 0.5 between conditions (as sample overlap gives)."""),
    ("code", """%matplotlib inline
import numpy as np
import pandas as pd
import mashlib as ml
from IPython.display import display
from mashlib.protocol.display import explore     # dropdown in JupyterLab, static figure in batch

rng = np.random.default_rng(1)
R, n = 5, 500
conds = [f"c{i + 1}" for i in range(R)]
truth = np.repeat(["null", "independent", "c1 only", "equal"], n)
B = np.zeros((4 * n, R))
B[n:2 * n] = 3 * rng.standard_normal((n, R))        # independent in each condition
B[2 * n:3 * n, 0] = 3 * rng.standard_normal(n)      # specific to c1
B[3 * n:] = 3 * rng.standard_normal((n, 1))         # equal in all conditions
V_true = 0.5 * np.ones((R, R)) + 0.5 * np.eye(R)     # residual correlation 0.5
E = rng.multivariate_normal(np.zeros(R), V_true, size=4 * n)
Shat = np.ones((4 * n, R))
Bhat = pd.DataFrame(B + Shat * E, columns=conds, index=[f"v{j + 1}" for j in range(4 * n)])
data = ml.mash_set_data(Bhat, Shat)
print(f"{data.n_effects} effects x {data.n_conditions} conditions")"""),
    ("md", """## 2. Condition by condition, and the strong set

`mash_1by1` runs adaptive shrinkage (ash) in each condition separately; the effects
significant (lfsr < 0.05) in at least one condition form the **strong** set, from which the
data-driven covariances are learned."""),
    ("code", """m1 = ml.mash_1by1(data)
strong = ml.get_significant_results(m1, 0.05)
print(f"strong set: {len(strong)} effects")
pd.crosstab(truth[strong], "n").T"""),
    ("md", """## 3. The residual correlation V (live)

`estimate_null_correlation_simple` takes the effects with all $|z| < 2$ (mostly nulls) and
computes the correlation of their z-scores. Ignoring it would make correlated noise look
like shared effects. The estimate is below the true 0.5: keeping only the rows with
$|z| < 2$ in *every* condition truncates the noise distribution (mashr's known bias;
`mash_estimate_corr_em`, the protocol's `vhat_mle`, re-estimates V given the prior)."""),
    ("code", """V = ml.estimate_null_correlation_simple(data)
print("estimated V (true off-diagonal 0.5):")
display(pd.DataFrame(np.asarray(V), index=conds, columns=conds).round(2))
data_V = ml.mash_update_data(data, V=V)"""),
    ("md", """## 4. Data-driven covariances

The **canonical** matrices (identity, one singleton per condition, equal effects, simple_het)
cover the obvious patterns. The **data-driven** ones are learned from the strong set: the top
principal components (`cov_pca`), refined by extreme deconvolution (`cov_ed`, Bovy et al.),
which fits each matrix to the *true* effects under the measurement-error model. As in mashr's
vignettes, ED starts from the PCA matrices only (a few seconds; the protocol's `ed_bovy` starts
from flash, pca and canonical matrices)."""),
    ("code", """U_c = ml.cov_canonical(data_V)
U_pca = ml.cov_pca(data_V, 3, subset=strong)
U_ed = ml.cov_ed(data_V, U_pca, subset=strong)
U = {**U_c, **U_ed}
print(f"{len(U_c)} canonical + {len(U_ed)} ED matrices: {', '.join(U_ed)}")"""),
    ("md", """## 5. Fit on a random set, posteriors on the strong set

The weights are learned on a **random** subset of all effects (unbiased for the genome,
mostly nulls), then the fitted model gives the posteriors of the strong effects."""),
    ("code", """random = np.sort(rng.choice(data.n_effects, 1000, replace=False))
m = ml.mash(data_V.subset(random), U, outputlevel=1)
post = ml.mash_compute_posterior_matrices(m, data_V.subset(strong))
w = ml.get_estimated_pi(m)
print(f"loglik on the random set: {m.loglik:.2f}")
w[w > 0.01].sort_values(ascending=False).round(3).to_frame("weight")"""),
    ("md", """Each weight says how much of the data a pattern explains: here the equal-effects and the
condition-1 patterns, and the ED refinements of the principal components. The heaviest
data-driven component, on `plot_U`'s scale ($U/\\max U_{ii}$), with a dropdown in JupyterLab:"""),
    ("code", """interactive = True  # False: static output only (what papermill / nbval keep)

def draw(name):
    return ml.plot_component(U[name], name, w=float(w.get(name, 0.0)), labels=conds)

heavy = [k for k in w.sort_values(ascending=False).index if k in U_ed]
# JupyterLab: a dropdown, one heatmap redrawn for the chosen component; papermill / nbval: the first
explore(heavy, draw, interactive, "component")"""),
    ("md", """## 6. Reading the lfsr

The **local false sign rate** of effect $j$ in condition $r$ is the posterior probability that
the sign of $b_{jr}$ is wrong: lfsr < 0.05 means we are confident of the direction of the
effect. It is stricter than a local false discovery rate (it also fails when the effect is
nonzero but its sign uncertain). Significant conditions per true pattern of the strong set:
the `c1 only` effects are significant in c1 alone, the `equal` ones in all conditions, as
they should be, because the prior borrows the pattern across effects."""),
    ("code", """lfsr = post["lfsr"]
sig = (lfsr < 0.05)
pd.DataFrame(sig.to_numpy(), columns=conds).groupby(truth[strong]).mean().round(2)"""),
    ("md", """Pairwise **sharing by magnitude** (mashr's `get_pairwise_sharing`): of the effects significant
in either of two conditions, the fraction whose posterior means are within a factor 2. And
one effect's posterior across conditions (`mash_plot_meta`: mean +/- 1.96 sd)."""),
    ("code", """display(ml.plot_sharing(ml.get_pairwise_sharing(post)))
eq = [i for i, t in enumerate(truth[strong]) if t == "equal"][0]
display(ml.mash_plot_meta(post, eq))"""),
    ("md", """## 7. EE versus EZ, on the same data

`effect_model` chooses the scale on which effects are exchangeable: **EE** (`alpha = 0`, the
default): the effects $b_j$ are drawn independently of their standard errors; **EZ**
(`alpha = 1`): the z-scores $b_j / \\hat s_j$ are, i.e. effects scale with the standard error
(e.g. very different allele frequencies or sample sizes). One data set with heterogeneous
standard errors, whose effects are proportional to them (an EZ world), analysed both ways:
the log-likelihoods are comparable (mash adds the Jacobian term for EZ), so the data can
decide."""),
    ("code", """s_het = np.exp(rng.normal(0.0, 0.7, size=(4 * n, 1))) * np.ones((1, R))   # one draw of standard errors
Bhat_het = B * s_het + s_het * E                                          # effects scale with them
fits = {}
for em, alpha in (("EE", 0.0), ("EZ", 1.0)):
    d = ml.mash_update_data(ml.mash_set_data(Bhat_het, s_het, alpha=alpha), V=V)
    fits[em] = ml.mash(d, U_c, outputlevel=1).loglik
pd.Series(fits).round(2).to_frame("loglik (same data, canonical U)")"""),
    ("md", """## Where next

* `mash_protocol.ipynb`: the protocol on the shipped 34-condition example (files in, RDS out).
* `mixture_prior.ipynb` (flash, pca, canonical, vhat_*, ed_bovy, ud, plot_U) and
  `mash_fit.ipynb` (mash fit, posteriors): one section per workflow, runnable in JupyterLab.
* For millions of effects: `mash_compute_posterior_matrices(m, data, max_memory="2GB",
  out="store/", engine="dask")` streams the posterior in chunks."""),
]


def vignette_nb():
    return _nb(VIGNETTE)


def mash_posterior_nb():
    from posterior_notebook import INTRO, SECTIONS
    intro = INTRO.format(table=_workflow_table("mash_posterior")) + HOW_IT_RUNS.format(nb="mash_posterior",
                                                                                       first="posterior")
    cells = [("md", intro), ("code", _param_cell("mash_posterior", "posterior"), "parameters"),
             ("code", SETUP.format(nb="mash_posterior"), "setup")]
    for step, title, text, compute, command in SECTIONS:
        cells += _section(step, title, text, compute, command=command, notebook="mash_posterior")
    return _nb(cells)


def notebooks() -> dict:
    """File name -> notebook object."""
    return {"mixture_prior.ipynb": mixture_prior_nb(), "mash_fit.ipynb": mash_fit_nb(),
            "mash_posterior.ipynb": mash_posterior_nb(),
            "mash_protocol.ipynb": driver_nb(), "multivariate_mixture_vignette.ipynb": vignette_nb()}


def destination(name: str, root=ROOT) -> Path:
    """Where notebook ``name`` lives: package data for the workflow notebooks, else ``notebooks/``."""
    root = Path(root)
    return (root / "mashlib" / "protocol" / "notebooks" / name if name in PACKAGE_NOTEBOOKS
            else root / "notebooks" / name)


def build(root=ROOT) -> list[Path]:
    """Write the notebooks under ``root`` (the checkout by default)."""
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
