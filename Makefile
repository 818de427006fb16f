# Two entry points (see README): `make run` and `make test`.
# Each creates .venv on first use with the system python3 (>= 3.10).
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv lab bench clean

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e ".[test,notebooks,dask]"
	$(VPY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VPY) -m mashlib demo

test: $(STAMP)
	$(VPY) -m pytest -q tests
	$(VPY) -m pytest -q --nbval-lax -p no:cacheprovider notebooks/

lab: $(STAMP)
	$(VPY) -m pip install --quiet -e ".[lab]"
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(VPY) benchmarks/bench_mash.py

clean:
	rm -rf $(VENV) output/*/ .pytest_cache
