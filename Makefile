# Two commands do all the set-up on a fresh machine with Python 3.11 and make:
#   make demo   -- create .venv, install, run the main job
#   make test   -- same install, run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

EVIDENCE_SWEEPS := main-arms routeA probe-tokens gate-score ablations capacity seeds honest band-width baselines keep-zone monitor keep-zone-seeds advantage-mod weak-monitor weak-monitor-seeds partial-labels routeV-keep-zone keep-baseline routeV-keep-zone-seeds claims-seeds retest-seeds routeA-placebo-seeds routeV-keep-tail-placebo main-arms-seeds baselines-seeds routeA-wide-seeds claims-ten-pairs claims-five-pairs claims-unretested claims-unretested-seeds
# Under VGROUT_CPU_KERNELS=portable an evidence sweep is another draw: its own runs and report
# (`VGROUT_CPU_KERNELS=portable make main-arms` -> runs/main-arms-portable, docs/evidence/main-arms-portable)
KERNELS_SUFFIX := $(if $(filter portable,$(VGROUT_CPU_KERNELS)),-portable,)

.PHONY: install demo sweep-demo evidence $(EVIDENCE_SWEEPS) test lint format bench clean

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

# Evidence sweeps, one spec each: `make NAME` runs sweeps/NAME.toml resumably into runs/NAME (2 runs
# at a time; a re-run skips finished runs and resumes killed ones), then writes the report and a
# copy of it in docs/evidence/NAME/, and refreshes docs/evidence/INDEX.md and all-runs.csv (the
# target fails with the sweep's exit status). ~3 min of CPU
# per toy run, so on 2 cores ~1.5 min of wall time per run.
#   main-arms     the six main arms at the current defaults, seeds 0-4 (30 runs)
#   routeA        the activation-space gate and its placebo, with none, seeds 0-4 (15 runs)
#   probe-tokens  routeV's c-probe on completion positions vs every position (25 runs)
#   gate-score    routeV's and routeA's band score: cosine vs raw dot, with placebos (65 runs)
#   ablations     the evidence's one-field ablations with their reference cells (55 runs)
#   capacity      none vs plain at equal trained adapter slots, and lr against slots (30 runs)
#   seeds         routeV vs its placebo (dot and cosine), absorb and none over seeds 0-9 (60 runs)
#   honest        none, plain and absorb trained on an honest grader (modes = gt_only) (15 runs)
#   band-width    routeA and its placebo with wider band tails, against absorb and oracle (55 runs)
#   baselines     the benchmark paper's interventions and advantage modification, against routing (45 runs)
#   keep-zone     routeA and its placebo without the band's keep tail, at wide and default bands (45 runs)
#   monitor       gt_screen on the oracle's strict labels and with erring monitors (40 runs)
#   keep-zone-seeds  the keep-zone result against absorb on fresh seeds 5-9 (10 runs)
#   advantage-mod  advantage_mod's activation direction on fresh seeds 5-9, and its gradient one, against absorb and routing by each (50 runs)
#   weak-monitor  one erring monitor screening vs routing its flags (unflagged in deployed or both) (65 runs)
#   weak-monitor-seeds  routing an erring monitor's flags (rest absorbed) vs screening them, seeds 5-9 (25 runs)
#   partial-labels  a monitor that misses half the hacks and never errs otherwise: unflagged keep vs absorb (20 runs)
#   routeV-keep-zone  routeV and its placebo without a keep zone, wide rout tail, both scores (50 runs)
#   keep-baseline  the keep zone's own advantage baseline for routeA and routeV (20 runs)
#   routeV-keep-zone-seeds  routeV without a keep zone against its placebo on fresh seeds 5-9 (15 runs)
#   claims-seeds  seeds 5-9 for the README's claims that fell short of Holm's correction (95 runs)
#   retest-seeds  seeds 5-9 for every claim that had none, so each is re-tested on seeds it was not made on (60 new runs, 90 cells)
#   routeA-placebo-seeds  routeA against its placebo at the default band on seeds 10-14, a second replication (10 runs)
#   routeV-keep-tail-placebo  routeV and its placebo in the wide band with and without the keep tail, the keep-zone claim's control (40 runs)
#   main-arms-seeds  the six main arms on fresh seeds 10-14, a second replication of the claims they carry (30 runs)
#   baselines-seeds  routeA's best band, screening, the advantage penalty and the honest grader on fresh seeds 10-14 (20 new runs, 35 cells)
#   routeA-wide-seeds  routeA and its placebo in the wide band (rout tail 0.45) on fresh seeds 10-14 (10 new runs, 15 cells)
#   claims-ten-pairs  seeds 10-14 for the nine claims that replicated on seeds 5-9 alone but not after Holm's correction (45 new runs, 65 cells)
#   claims-five-pairs  seeds 10-14 for the 13 claims re-tested on only five fresh pairs (65 new runs, 85 cells)
#   claims-unretested  seeds 10-14 for the three claims with no fresh seeds (22, 23, 32; 20 new runs, 30 cells)
#   claims-unretested-seeds  seeds 15-19 for the same three claims, ten fresh pairs each (25 runs)
RUNS ?= runs
$(EVIDENCE_SWEEPS): install
	status=0; $(BIN)/vgrout sweep --spec sweeps/$@.toml --backend local --jobs 2 \
		--out $(RUNS)/$@$(KERNELS_SUFFIX) || status=$$?; \
	$(BIN)/vgrout report $(RUNS)/$@$(KERNELS_SUFFIX) \
		--publish docs/evidence/$@$(KERNELS_SUFFIX) && \
	$(BIN)/vgrout index docs/evidence && exit $$status

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
		--publish docs/evidence && \
	$(BIN)/vgrout index docs/evidence && exit $$status
