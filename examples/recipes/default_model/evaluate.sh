#!/usr/bin/env bash
# Evaluate one bundle on the four test sets the README reports (accuracy with a bootstrap interval,
# consistency and plausibility under the embedded base model as judge, diversity, SCOTT's oracle and
# perturbed checks). Usage: evaluate.sh BUNDLE OUT_FOLDER [extra `rationalize eval` flags]
# EVAL_LIMIT_<SET> caps a test set (unset: all of it), e.g. EVAL_LIMIT_CQA=400.
set -euo pipefail
bundle=$1; out=$2; shift 2
data=${RATIONALIZER_DATA:-../shared/data}
for set in strategyqa cqa obqa qasc; do
  var="EVAL_LIMIT_$(echo "$set" | tr a-z A-Z)"
  limit=${!var:-}
  rationalize eval "$bundle" --data "$data/$set/test.jsonl" ${limit:+--limit "$limit"} \
    --out "$out/$set" --json "$@" > "$out.$set.json"
done
