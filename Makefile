# rmail: `make run` serves (creating .venv and a dev config on first run); `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-test.txt | cksum | cut -d' ' -f1)

.PHONY: run test clean fuzz

$(STAMP): requirements.txt requirements-test.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@# the checkout on the venv's path: `import rmail` and `.venv/bin/twistd rmail` work anywhere
	@echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/rmail-checkout.pth"
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	@test -f config.json || $(PY) run.py init --dev
	$(PY) run.py config.json

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) .pytest_cache

# `make fuzz`: coverage-guided fuzzing of each parser with atheris (fuzz/run.py), one target
# at a time; prints inputs run per target and what crashed. Not part of `make test`.
# FUZZ_RUNS inputs per target, or FUZZ_TIME seconds per target instead of a count;
# FUZZ_TARGETS="smtp_command imap_framing ..." runs only those (default: all).
FUZZ_RUNS ?= 1000000
FUZZ_TIME ?=
FUZZ_TARGETS ?=
FUZZ_STAMP := $(VENV)/.fuzz-installed-$(shell cat requirements.txt requirements-fuzz.txt | cksum | cut -d' ' -f1)

$(FUZZ_STAMP): $(STAMP) requirements-fuzz.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-fuzz.txt
	@rm -f $(VENV)/.fuzz-installed-*
	@touch $@

fuzz: $(FUZZ_STAMP)
	$(PY) fuzz/run.py $(if $(FUZZ_TIME),--time $(FUZZ_TIME),--runs $(FUZZ_RUNS)) $(FUZZ_TARGETS)
