# Every target runs inside .venv, made by `make install`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    := ../shared/data
OUT     ?= out

.PHONY: install test demo tubingen bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## create .venv and install the project with its dev extras (pinned torch, no download here)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'

test:  ## run the test suite
	$(BIN)/pytest -q

demo:  ## stylize the generated sample photo with the generated sample painting
	$(BIN)/python samples/make_samples.py
	$(BIN)/stylize image samples/content.png -s samples/style.png -o $(OUT)/demo.png --size 256 --iterations 150 --overwrite

tubingen:  ## the README's real-world run: tubingen x starry_night at 512 px
	$(BIN)/stylize image $(DATA)/contents/tubingen.jpg -s $(DATA)/styles/starry_night.jpg -o $(OUT)/tubingen_starry.jpg --overwrite

bench:  ## engine benchmarks (issue 7); results go to docs/benchmarks.md by hand
	$(BIN)/python benchmarks/bench_engine.py

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf $(OUT) .pytest_cache samples/content.png samples/style.png
