# The README's two commands: `make demo` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv test-tools system-packages vendor clean

# Debian packages the project uses beyond Python (PostGIS itself is installed by `geoservice db up`).
system-packages:
	@bash scripts/system-packages.sh

$(STAMP): pyproject.toml
	@bash scripts/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP)

# ogctests (for the tests) and tipg (for bench/serve.py), apart from the virtualenv: their pins would downgrade it.
test-tools: venv
	@VENV=$(VENV) bash scripts/test-tools.sh

# Re-vendor MapLibre GL JS (the /map viewer) from npm after changing its version in package.json; the built files are
# committed, so neither `make demo` nor `make test` needs npm.
vendor:
	@bash scripts/vendor.sh

demo: venv
	$(BIN)/geoservice demo

test: test-tools
	$(BIN)/geoservice db up
	$(BIN)/pytest

clean:
	-$(BIN)/geoservice db down
	rm -rf $(VENV) .geoservice
