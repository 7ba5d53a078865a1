# The two commands of the README: `make demo` (set up, run the daemon and a live session)
# and `make test` (set up, run every test). Both install what they need themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml symblctl/pyproject.toml tests/js/package-lock.json
	./scripts/install-deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./symblctl  # the client distribution first: the daemon's depends on it
	$(PY) -m pip install -q -e '.[test,bench]'
	# The official Symbl SDK, as an outside client in the compatibility tests. --no-deps: its pyaudio
	# dependency needs PortAudio headers to build and is only used by its own microphone helper.
	$(PY) -m pip install -q --no-deps symbl==2.0.6 symbl-rest==1.0.14
	$(PY) -m pip install -q urllib3 six certifi python-dateutil
	# The turn model of the extra symbld[turn] (tests/test_end_of_turn.py): only its ONNX file is used, so --no-deps.
	$(PY) -m pip install -q --no-deps pipecat-ai==1.14.0
	# The official Symbl JS SDK (pinned by tests/js/package-lock.json), driven by node in tests.
	npm ci --prefix tests/js --no-audit --no-fund
	touch $@

setup: $(VENV)/.installed

demo: setup
	./scripts/demo.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -n 3 $(PYTEST_ARGS)  # three workers on two cores: many tests wait on real-time audio (docs/testing.md)

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
