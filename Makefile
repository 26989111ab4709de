# Every target runs inside .venv, made by `make install`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    := ../shared/data
OUTDIR  ?= out

.PHONY: install test test-all demo tubingen bench bench-video bench-cluster bench-long bench-print bench-presets bench-temporal bench-motion bench-throughput bench-first-frame video folder clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## create .venv and install the project with its dev extras (pinned torch, no download here)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'

test:  ## the test suite without the end-to-end runs marked slow (minutes on 2 cores, CI's command)
	$(BIN)/pytest -q -m "not slow"

test-all:  ## every test, the slow end-to-end runs included (about half an hour on 2 AVX2 cores)
	$(BIN)/pytest -q

demo:  ## stylize the generated sample photo with the generated sample painting
	$(BIN)/python samples/make_samples.py
	$(BIN)/stylize image samples/content.png -s samples/style.png -o $(OUTDIR)/demo.png --size 256 --iterations 150 --overwrite

tubingen:  ## the README's real-world run: tubingen x starry_night at 512 px
	$(BIN)/stylize image $(DATA)/contents/tubingen.jpg -s $(DATA)/styles/starry_night.jpg -o $(OUTDIR)/tubingen_starry.jpg --overwrite

bench:  ## engine benchmarks; results go to docs/benchmarks.md by hand
	$(BIN)/python -m benchmarks.bench_engine $(ARGS)

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf $(OUTDIR) .pytest_cache samples/content.png samples/style.png

bench-video:  ## video benchmarks: warm starts and fills on car-detection.mp4
	$(BIN)/python -m benchmarks.bench_video $(ARGS)

video:  ## stylize a video: make video IN=clip.mp4 STYLE=painting.jpg OUT=clip-styled.mp4 [ARGS="--size 384"]
	@test -n "$(IN)" -a -n "$(STYLE)" -a -n "$(OUT)" || { echo "usage: make video IN=... STYLE=... OUT=... [ARGS=...]"; exit 2; }
	$(BIN)/stylize video "$(IN)" -s "$(STYLE)" -o "$(OUT)" $(ARGS)

folder:  ## stylize a folder of photos: make folder IN=photos/ STYLE=painting.jpg OUT=photos-styled/ [ARGS=...]
	@test -n "$(IN)" -a -n "$(STYLE)" -a -n "$(OUT)" || { echo "usage: make folder IN=... STYLE=... OUT=... [ARGS=...]"; exit 2; }
	$(BIN)/stylize folder "$(IN)" -s "$(STYLE)" -o "$(OUT)" $(ARGS)

bench-cluster:  ## Ray scale-out: photos per minute locally and with 1 and 2 Ray workers
	$(BIN)/python -m benchmarks.bench_cluster

bench-print:  ## a 4032x3024 photo at full size: wall time and peak RSS per scale, a crop beside a 512-px result
	$(BIN)/python -m benchmarks.bench_print $(ARGS)

bench-long:  ## soak runs over 15 minutes each: whole car-detection, a 10-minute lavfi clip, 500 photos (RSS each minute)
	$(BIN)/python -m benchmarks.bench_long $(ARGS)

bench-presets:  ## each --preset: seconds per first and later frame, losses against a cold frame; car-detection at 256 px
	$(BIN)/python -m benchmarks.bench_presets $(ARGS)

bench-temporal:  ## long-term consistency: drift, warping error at k=1 and 30, evaluations per frame; bottle- and car-detection at 256 px
	$(BIN)/python -m benchmarks.bench_temporal $(ARGS)

bench-motion:  ## fast motion: flows and stylized clips whose true motion is known (synthetic pans, zooms, a crossing object; windows over real clips); --part crops | panorama: what a consistent video can reach; --part dis: DIS's parameters; --settings='default,--passes 3': the stylized rows
	$(BIN)/python -m benchmarks.bench_motion $(ARGS)

bench-throughput:  ## where a later frame's time goes (decode, flow, warps, VGG passes, optimizer, write, encode) beside a bare VGG pass; fixed cost of `stylize image`; neural-style-pt if installed
	$(BIN)/python -m benchmarks.bench_throughput $(ARGS)

bench-first-frame:  ## a shot's first frame: candidate starts and budgets (palette start, fewer iterations, early stop, two sizes) against 300 iterations from the photo, frame 0 and frame 5 losses
	$(BIN)/python -m benchmarks.bench_first_frame $(ARGS)
