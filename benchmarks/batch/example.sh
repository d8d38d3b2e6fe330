#!/usr/bin/env bash
# docs/cost.md's worked example: estimate → budget → batch, against the mock batch server
# (tests/mock_batch.py), on the tiny fixture pipeline with N generated questions.
# Usage: benchmarks/batch/example.sh [N]   (from the repo root; prints every figure it measures)
set -euo pipefail
N=${1:-500}
PY=${PY:-python}
OUT=$(mktemp -d)
for i in $(seq 1 "$N"); do echo "{\"question\": \"What is item number $i good for?\"}"; done >"$OUT/q.jsonl"
$PY tests/mock_batch.py --in-progress-polls 6 >"$OUT/mock.log" 2>&1 &
MOCK=$!
trap 'kill $MOCK' EXIT
until grep -q PORT "$OUT/mock.log"; do sleep 0.1; done
PORT=$(awk '/PORT/ {print $2}' "$OUT/mock.log")
export MOCK_KEY=sk-mock TINY_DATA="$OUT/q.jsonl" SELFALIGN_CACHE="$OUT/cache.sqlite"
ARGS=(--config-dir tests/fixtures/conf pipeline=tiny "prompts.search_path=[tests/fixtures/prompts]"
  model=openai model.name=openai/gpt-4o-mini "model.api_base=http://127.0.0.1:$PORT/v1"
  model.api_key_env=MOCK_KEY "model.price={input_per_mtok: 0.15, output_per_mtok: 0.6}")
BATCH=(pipeline.stages.answer.batch=true pipeline.stages.judge.batch=true
  pipeline.stages.answer.batch_poll_s=0.5 pipeline.stages.judge.batch_poll_s=0.5)
stats() { curl -s "http://127.0.0.1:$PORT/_stats"; echo; }
run() { /usr/bin/time -f "wall %e s" $PY -m selfalign "$@" && echo "exit 0" || echo "exit $?"; }

echo "== 1. estimate, live prices"; run estimate "${ARGS[@]}" --out "$OUT/live.json" | tail -4
echo "== 2. estimate, batched"; run estimate "${ARGS[@]}" "${BATCH[@]}" --out "$OUT/batch.json" | tail -4
echo "== 3. a budget below the first batch's worst case: refused before anything is sent"
run run "${ARGS[@]}" "${BATCH[@]}" budget.max_usd=0.02 "hydra.run.dir=$OUT/small" 2>&1 | tail -2
stats
echo "== 4. run with a budget, stopped after 1.5 s of waiting (a kill would do the same)"
run run "${ARGS[@]}" "${BATCH[@]}" budget.max_usd=0.15 pipeline.stages.answer.batch_max_wait_s=1.5 \
  "hydra.run.dir=$OUT/run" 2>&1 | tail -3
stats
echo "== 5. re-run into the same run dir: re-attaches to the answer batch"
run run "${ARGS[@]}" "${BATCH[@]}" budget.max_usd=0.15 "hydra.run.dir=$OUT/run" 2>&1 | tail -3
stats
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
for name in ("live", "batch"):
    t = json.load(open(f"{out}/{name}.json"))["totals"]
    print(name, "estimate:", t["calls"], "calls,", t["prompt_tokens"], "prompt tokens, $", t["usd_low"], "-", t["usd_high"])
m = json.load(open(f"{out}/run/manifest.json"))
print("manifest:", m["status"], m["llm_totals"])
print("budget.json:", json.load(open(f"{out}/run/budget.json")))
print("batches:", {s: [(b["id"], b["status"], len(b["keys"])) for b in json.load(open(f"{out}/run/batches/{s}.json"))] for s in ("answer", "judge")})
PYEOF
echo "== 6. a third run: everything from the cache"
curl -s -X POST "http://127.0.0.1:$PORT/_reset" >/dev/null
run run "${ARGS[@]}" "${BATCH[@]}" "hydra.run.dir=$OUT/run2" 2>&1 | tail -1
stats
rm -rf "$OUT"
