#!/usr/bin/env bash
# Issue 11's GPU targets in one command, on a machine with one CUDA GPU and no model hub:
#   1. `vgrout bench step --preset leetcode-qwen3-4b --random-weights`: whole GRPO steps at
#      Qwen3-4B's published shape (random weights built on the GPU, a locally trained tokenizer),
#      arms none and routeV, with the phase breakdown and peak memory (targets: none <= 30 s a
#      step, routeV/none <= 1.3);
#   2. `vgrout bench generate --shape qwen3-4b`: ms per decode step of HF generate and of vgrout's
#      engine at batch 56, with the weight-bandwidth floor (target: within 10x of the floor).
# It needs python3 with torch (CUDA build) and vgrout's dependencies (it runs from the source
# tree, PYTHONPATH=src, nothing installed), and the LeetCode files in $GPU_DATA (default
# .gpu-data, git-ignored): LeetCodeDataset-v0.2.0-train.jsonl.gz and leetcode_test_medhard.jsonl.gz.
# With the device tool of this workplace (15 minutes of device time in all, so one call):
#   mkdir -p .gpu-data && cp ../shared/data/leetcode/*.gz .gpu-data/
#   run(command="bash scripts/gpu-targets.sh", carry=[".gpu-data"], timeout_s=400)
# (the two limits below sum to 360 s: with the ~1 min start, ~7 of the 15 minutes, which leaves
# room for one rerun, e.g. with STEPS=2 or other limits, while the machine is still warm)
# Each command runs under its own time limit (STEP_LIMIT, GEN_LIMIT seconds) and writes its output
# to $OUT (the device tool's folder; else runs/gpu-targets) as it goes, so a slow part still leaves
# the other's numbers and how far it got. A CPU dry run on a tiny shape checks the script only:
#   SHAPE=qwen3-vocab-tiny NEW_TOKENS=8 GEN_TOKENS=4 BATCH=4 PROMPT_LEN=16 bash scripts/gpu-targets.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-targets}
GPU_DATA=${GPU_DATA:-.gpu-data}
PY=${PYTHON:-python3}
SHAPE=${SHAPE:-qwen3-4b}          # a shape of vgrout/shapes.py
STEPS=${STEPS:-1}                 # timed steps per arm, after one warm-up step (compiles)
NEW_TOKENS=${NEW_TOKENS:-}        # empty: the preset's max_new_tokens (1,024)
GEN_TOKENS=${GEN_TOKENS:-128}     # bench generate: new tokens per row
BATCH=${BATCH:-56}                # bench generate: rows
PROMPT_LEN=${PROMPT_LEN:-256}     # bench generate: prompt tokens
STEP_LIMIT=${STEP_LIMIT:-220}     # seconds: model build, then 2 steps per arm
GEN_LIMIT=${GEN_LIMIT:-140}       # seconds: model build, compile, HF and engine
export PYTHONPATH=src PYTHONUNBUFFERED=1 VGROUT_DATA_DIR="$GPU_DATA"
mkdir -p "$OUT"

for f in LeetCodeDataset-v0.2.0-train.jsonl.gz leetcode_test_medhard.jsonl.gz; do
  [ -f "$GPU_DATA/$f" ] || { echo "missing $GPU_DATA/$f: copy it from ../shared/data/leetcode" >&2; exit 2; }
done
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# the preset's training problems, built from the dataset (~15 s)
if [ ! -f "$GPU_DATA/leetcode_train_medhard.jsonl" ]; then
  "$PY" -m vgrout data leetcode-train --from "$GPU_DATA/LeetCodeDataset-v0.2.0-train.jsonl.gz" \
    --out "$GPU_DATA/leetcode_train_medhard.jsonl" > "$OUT/data.txt" 2>&1 || { cat "$OUT/data.txt"; exit 1; }
fi

status=0
sets=()
[ -n "$NEW_TOKENS" ] && sets=(--set "max_new_tokens=$NEW_TOKENS" --set "teacher_max_tokens=$NEW_TOKENS")
timeout "$STEP_LIMIT" "$PY" -m vgrout bench step --preset leetcode-qwen3-4b --random-weights \
  --shape "$SHAPE" --steps "$STEPS" --warmup 1 "${sets[@]}" 2>&1 | tee "$OUT/step.txt" || status=$?
timeout "$GEN_LIMIT" "$PY" -m vgrout bench generate --shape "$SHAPE" --batch "$BATCH" \
  --new-tokens "$GEN_TOKENS" --prompt-len "$PROMPT_LEN" --rounds 1 2>&1 | tee "$OUT/generate.txt" || status=$?
exit $status
