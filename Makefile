# Two commands do all the set-up on a fresh machine:
#   make run    -> installs into .venv (once) and serves the embedded default model: Triton + the HTTP gateway
#   make test   -> installs into .venv (once) and runs the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision asked for together, so a matching pair resolves (a range for torch alone lets another package swap it)
	$(PY) -m pip install -q "torch>=2.6" "torchvision>=0.21"
	$(PY) -m pip install -q -e ".[dev,ray,onnx,milvus]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vlserve serve --repository model_repository --toy-index toyworld

# the UI's browser tests drive Debian's chromium package (Playwright's own browser download is not used)
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check vlserve tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest tests

lint: $(STAMP)
	$(VENV)/bin/ruff check vlserve tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
