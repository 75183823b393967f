# Two commands do all the set-up on a fresh machine with Python 3.11 and make:
#   make demo   -- create .venv, install, run the main job
#   make test   -- same install, run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: install demo sweep-demo evidence main-arms probe-tokens ablations gate-score test lint format bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,sweep]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/vgrout demo

# The main arms x 3 seeds on the toy (18 runs, 2 at a time), then the sweep report. A re-run skips
# finished runs and resumes killed ones; the report is written even if some runs failed (it lists
# them), and the target then fails with the sweep's exit status.
SWEEP_DEMO ?= runs/sweep-demo
sweep-demo: install
	status=0; $(BIN)/vgrout sweep --preset toy --backend local --jobs 2 \
		--grid arm=none,plain,routeV,routeV_placebo,absorb,oracle --grid seed=0,1,2 \
		--out $(SWEEP_DEMO) || status=$$?; \
	$(BIN)/vgrout report $(SWEEP_DEMO) && exit $$status

# The main arms at the current defaults, seeds 0-4 (sweeps/main-arms.toml: 30 runs, 2 at a time;
# ~1 h on 2 cores), then the report and a copy of it in docs/evidence/main-arms/.
MAIN_ARMS ?= runs/main-arms
main-arms: install
	status=0; $(BIN)/vgrout sweep --spec sweeps/main-arms.toml --backend local --jobs 2 \
		--out $(MAIN_ARMS) || status=$$?; \
	$(BIN)/vgrout report $(MAIN_ARMS) --publish docs/evidence/main-arms && exit $$status

# routeV's c-probe on completion positions only vs every position, with placebos and none
# (sweeps/probe-tokens.toml: 25 runs, 2 at a time; 30 min on a 2-core AMD EPYC), then the report and a copy
# in docs/evidence/probe-tokens/.
PROBE_TOKENS ?= runs/probe-tokens
probe-tokens: install
	status=0; $(BIN)/vgrout sweep --spec sweeps/probe-tokens.toml --backend local --jobs 2 \
		--out $(PROBE_TOKENS) || status=$$?; \
	$(BIN)/vgrout report $(PROBE_TOKENS) --publish docs/evidence/probe-tokens && exit $$status

# routeV's and routeA's band score as a cosine against the raw dot, each with its placebo
# (sweeps/gate-score.toml: 65 runs, 2 at a time), then the report and docs/evidence/gate-score/.
GATE_SCORE ?= runs/gate-score
gate-score: install
	status=0; $(BIN)/vgrout sweep --spec sweeps/gate-score.toml --backend local --jobs 2 \
		--out $(GATE_SCORE) || status=$$?; \
	$(BIN)/vgrout report $(GATE_SCORE) --publish docs/evidence/gate-score && exit $$status

# The evidence's one-field ablations at the current defaults with their reference cells
# (sweeps/ablations.toml: 50 runs, 2 at a time), then the report and docs/evidence/ablations/.
ABLATIONS ?= runs/ablations
ablations: install
	status=0; $(BIN)/vgrout sweep --spec sweeps/ablations.toml --backend local --jobs 2 \
		--out $(ABLATIONS) || status=$$?; \
	$(BIN)/vgrout report $(ABLATIONS) --publish docs/evidence/ablations && exit $$status

test: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info

# The toy's evidence (sweeps/evidence.toml: 65 runs, 2 at a time; hours on 2 cores). Resumable:
# a re-run skips finished runs and resumes killed ones. Then the classifier analysis of the
# direction arms, the report, and a copy of report, plots and runs.csv in docs/evidence/.
# The spec pins how the published runs were made (mixed_decode=auto, share_prompt_forward=false).
EVIDENCE ?= runs/evidence
evidence: install
	status=0; $(BIN)/vgrout sweep --spec sweeps/evidence.toml --backend local --jobs 2 \
		--out $(EVIDENCE) || status=$$?; \
	$(BIN)/vgrout report $(EVIDENCE) --classify-arms routeV,routeV_placebo \
		--reading docs/evidence/reading.md \
		--publish docs/evidence && exit $$status
