# rmail: `make run` serves (creating .venv and a dev config on first run); `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-test.txt | cksum | cut -d' ' -f1)

.PHONY: run test clean

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
