# Two entry points (see README): `make run` and `make test`.
# Each creates .venv on first use with the system python3 (>= 3.10), installing the exact
# versions of requirements.lock (the loose ranges stay in pyproject.toml for library users).
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
EXTRAS := test,notebooks,dask
# tests and notebooks: one BLAS thread per process (the machines are shared; numbers do not
# depend on it)
THREADS := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: run test venv lab bench clean test-latest

# set-up: uv (pinned in the lock, installed from PyPI into the venv) when it can be had,
# else pip; both with the exact versions of the lock. No build isolation: setuptools comes
# from the lock, so nothing floats and the editable install needs no second download.
# PYTHONWARNINGS quiets setuptools' generic "editable installation" notice. --compile-bytecode
# (pip does it by default): where PYTHONDONTWRITEBYTECODE is set (CI images, containers) no .pyc
# is ever written, and every notebook kernel would compile pandas, scipy and matplotlib anew
# (about 1.3 s per process).
INSTALL = PYTHONWARNINGS=ignore $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VPY) -c $(LOCK)
PIPINSTALL = PYTHONWARNINGS=ignore $(VPY) -m pip install --quiet -c $(LOCK)
$(STAMP): pyproject.toml $(LOCK)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	if $(PIPINSTALL) uv 2>/dev/null && $(INSTALL) pip setuptools wheel \
	    && $(INSTALL) --no-build-isolation -e ".[$(EXTRAS)]"; then :; else \
	  echo "uv unavailable: installing with pip"; \
	  $(PIPINSTALL) pip setuptools wheel && $(PIPINSTALL) --no-build-isolation -e ".[$(EXTRAS)]"; fi
	$(VPY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VPY) -m mashlib demo

test: $(STAMP)
	$(THREADS) $(VPY) -m pytest -q -p no:cacheprovider tests
	$(THREADS) $(VPY) -m pytest -q -p no:cacheprovider --nbval-lax notebooks/ mashlib/protocol/notebooks/

# The suite against the newest versions pyproject.toml allows (a separate venv; not in
# .ci/run): drift shows here before users see it.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	PYTHONWARNINGS=ignore $(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager --no-build-isolation -e ".[$(EXTRAS),lab]"
	$(LATEST)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@$(LATEST)/bin/python -m pip freeze --all --exclude mashlib | grep -vxFf $(LOCK) | sed 's/^/newer than the lock: /' || true
	$(THREADS) $(LATEST)/bin/python -m pytest -q -p no:cacheprovider tests
	$(THREADS) $(LATEST)/bin/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks/ mashlib/protocol/notebooks/

lab: $(STAMP)
	PYTHONWARNINGS=ignore $(VPY) -m pip install --quiet --no-build-isolation -c $(LOCK) -e ".[$(EXTRAS),lab]"
	$(VPY) -m mashlib lab

bench: $(STAMP)
	$(VPY) benchmarks/bench_mash.py

clean:
	rm -rf $(VENV) $(LATEST) output/*/ .pytest_cache lab/
