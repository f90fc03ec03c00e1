# The two commands a new user runs: `make demo` and `make test`. Each works alone on a fresh
# machine: it creates .venv if missing and installs the package with its test needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.jaxseq-installed

.PHONY: install demo test docs bench quality clean

install: $(STAMP)

# torch==2.13.0 first and explicitly: it is the CPU build (see pyproject.toml). coco-eval: the
# COCO caption scorers (pycocoevalcap), which the tests run; docs: MkDocs, whose strict build
# the tests run too.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,coco-eval,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxseq demo

# The test files run in TEST_WORKERS processes (pytest-xdist; a file stays in one process, so
# its module fixtures and jit caches are shared): 2 halves the time on 2 cores. Each worker
# can take ~5 GB at its peak, so more workers need the memory too. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The documentation site (docs/, mkdocs.yml) into site/ (git-ignored); --strict: a broken link,
# anchor or API reference is an error. Open site/index.html, or `.venv/bin/mkdocs serve`.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# About 25 minutes on 2 cores. Writes bench-output/ (git-ignored); to record a run in the
# committed tables: `.venv/bin/jaxseq bench --out benchmarks/results`.
bench: $(STAMP)
	$(VENV)/bin/jaxseq bench

# Long quality runs (several seeds, full epochs): BLEU-1 on the built-in scenes, CoLA MCC, the
# language model's validation loss on Tiny Shakespeare for a 10-minute budget (jaxseq and its
# PyTorch twin, 3 seeds each: about an hour) and the word-level check.
quality: $(STAMP)
	$(PY) benchmarks/quality/captioning_quality.py
	$(PY) benchmarks/quality/cola_quality.py
	$(PY) benchmarks/quality/lm_quality.py --seeds 0 1 2

clean:
	rm -rf $(VENV) demo-output bench-output .pytest_cache .hypothesis
