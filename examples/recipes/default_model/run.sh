#!/usr/bin/env bash
# The whole recipe of the embedded default, one command, from the repository root with ../shared/data beside it:
#   bash examples/recipes/default_model/run.sh
# Every step resumes where a killed run stopped (trainer checkpoints; finished steps are skipped).
# DEVICE=cuda trains on a GPU (the same configs; bf16 autocast is worth adding there: PRECISION=bf16).
# The README's table evaluates the whole StrategyQA test set and the first 400 CommonsenseQA, 100 OpenBookQA
# and 100 QASC test questions without the faithfulness checks (EVAL_LIMIT_<SET>= and EVAL_FLAGS= change that).
# SHIP=1 writes the result into sdk/default_bundle.
set -euo pipefail
here=examples/recipes/default_model
runs=${RUNS:-runs}
flags=(--device "${DEVICE:-auto}")
[ -n "${PRECISION:-}" ] && flags+=(--precision "$PRECISION")
export EVAL_LIMIT_CQA=${EVAL_LIMIT_CQA-400} EVAL_LIMIT_OBQA=${EVAL_LIMIT_OBQA-100} EVAL_LIMIT_QASC=${EVAL_LIMIT_QASC-100}
read -r -a eval_flags <<< "${EVAL_FLAGS---no-faithfulness}"

[ -f "$runs/default-sft/rationalizer.json" ] || rationalize train sft --config "$here/sft.json" \
  --out "$runs/default-sft" "${flags[@]}" $([ -d "$runs/default-sft/checkpoints" ] && echo --resume)
[ -f "$runs/default-mario/rationalizer.json" ] || rationalize train mario --config "$here/mario.json" \
  --sft "$runs/default-sft" --out "$runs/default-mario" "${flags[@]}" \
  $([ -f "$runs/default-mario/rounds.json" ] && echo --resume)

# Each student is evaluated in the form it ships in: its adapter as a GGUF LoRA over the Q4_1 base, on llama.cpp
for label in sft mario; do
  [ -f "$runs/default-$label-gguf/rationalizer.json" ] || \
    python "$here/ship.py" "$runs/default-$label" --target "$runs/default-$label-gguf"
done
mkdir -p "$runs/eval"
for pair in base:base sft:"$runs/default-sft-gguf" mario:"$runs/default-mario-gguf"; do
  label=${pair%%:*}; bundle=${pair#*:}
  [ -s "$runs/eval/$label.qasc.json" ] || bash "$here/evaluate.sh" "$bundle" "$runs/eval/$label" "${eval_flags[@]}"
done

# GGUF fidelity of the student against itself unquantized (fp32 torch), and the adapter over the shipped Q4_1 base
[ -f "$runs/export/fidelity.json" ] || rationalize export "$runs/default-mario" --gguf q8_0,q4_k_m,lora \
  --out "$runs/export" --dev "${RATIONALIZER_DATA:-../shared/data}/strategyqa/dev.jsonl" --limit 30

# Which codes steer: each at level 1 and at its top level on StrategyQA and CommonsenseQA test questions,
# paired by question; the manifest records every effect and offers only the codes whose interval excludes 0
data=${RATIONALIZER_DATA:-../shared/data}
[ -s "$runs/eval/codes.md" ] || rationalize codes "$runs/default-mario-gguf" --data "$data/strategyqa/test.jsonl" \
  --data "$data/cqa/test.jsonl" --limit "${CODES_LIMIT:-200}" --min-n 300 --write | tee "$runs/eval/codes.md"

if [ "${SHIP:-0}" = 1 ]; then
  python "$here/ship.py" "$runs/default-mario" --evals "$runs/eval" --fidelity "$runs/export/fidelity.json" \
    --codes "$runs/default-mario-gguf"
fi
python "$here/report.py" "$runs/eval" | tee "$runs/eval/table.md"
