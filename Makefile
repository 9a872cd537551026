# The two commands a newcomer needs: `make demo` and `make test`.
# Everything (virtual environment, package, system data) is installed by these targets.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch is installed first at exactly these versions (CPU-usable wheels that pip finds locally),
# so that the package's own loose torch requirement never makes pip fetch another build.
TORCH   := torch==2.14.1 torchvision==0.29.1
APT     := $(shell command -v apt-get 2>/dev/null)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || command -v sudo 2>/dev/null)

.PHONY: demo test bench sysdeps fmnist chromium clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST from Debian's package (the demo falls back to scikit-learn's digits without it).
fmnist:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ -n "$(APT)" ]; then \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "note: could not install dataset-fashion-mnist with apt-get"; \
	fi

# Headless Chromium for the HTML report test (skipped by the test when it cannot be installed).
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ -n "$(APT)" ]; then \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: could not install chromium with apt-get"; \
	fi

sysdeps: fmnist chromium

demo: $(STAMP) fmnist
	$(BIN)/causal-prune compare --preset demo --match-sparsity --fallback-dataset digits --out runs

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

bench: $(STAMP) fmnist
	$(BIN)/python bench/run.py

clean:
	rm -rf runs bench/_tmp .pytest_cache
