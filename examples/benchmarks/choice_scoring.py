"""What answering by choice scoring costs, against generating the rationale and against a judge's scoring.

For each multiple-choice question of a data file, in one process, on the same GGUF bundle and threads:
the greedy rationale (``rationalize``), then the choices scored after it three ways, alternating so that
all see the same machine state:

- ``sdk``: ``Rationalizer.choice_logprobs``, stepwise on the generating llama.cpp context's KV cache;
- ``logits_all``: the same bundle opened as a judge (``load_judge``: ``LlamaCppBackend.open_judge``), a second
  llama.cpp instance that keeps the logits of every position (what lm-evaluation-harness-style scoring
  does) and reuses the cache of the context the choices share;
- and whether both pick the same choice (they score the same weights, so they should).

    python examples/benchmarks/choice_scoring.py [--bundle default] [--data ../shared/data/cqa/test.jsonl]
                                                 [--limit 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from rationalizer import Rationalizer
from rationalizer.dataset import read_examples
from rationalizer.evaluation.judges import load_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--data", default="../shared/data/cqa/test.jsonl")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", dest="json_out", help="also write the figures here")
    args = parser.parse_args()

    spec = None if args.bundle == "default" else args.bundle
    model = Rationalizer.load(spec, backend="llamacpp", threads=args.threads)
    peer = load_judge(str(model.bundle.folder), args.threads)  # the folder: "default" as a judge is the base model
    marker = model.manifest.parser.marker
    examples = [e for e in read_examples(args.data) if e.choices][: args.limit]
    generate, sdk, full, agree = [], [], [], 0
    for i, ex in enumerate(examples):
        start = time.perf_counter()
        out = model.rationalize(ex.question, ex.choices)
        generate.append(time.perf_counter() - start)
        rationale = out.rationale
        context = model.prompt(ex.question, ex.choices) + (f"{rationale} {marker}" if rationale else marker)
        pairs = [(context, f" {c}.") for c in ex.choices]
        runs = [("sdk", lambda: model.choice_logprobs(ex.question, ex.choices, rationale)),
                ("peer", lambda: {c: ll / max(n, 1) for c, (ll, n) in zip(ex.choices, peer.backend.loglikelihoods(pairs))})]
        picks = {}
        for name, run in (runs if i % 2 == 0 else runs[::-1]):
            start = time.perf_counter()
            scores = run()
            (sdk if name == "sdk" else full).append(time.perf_counter() - start)
            picks[name] = max(scores, key=scores.get)
        agree += picks["sdk"] == picks["peer"]
    figures = {
        "bundle": args.bundle, "data": args.data, "questions": len(examples), "threads": args.threads,
        "generate_s": statistics.median(generate), "sdk_scoring_s": statistics.median(sdk),
        "logits_all_scoring_s": statistics.median(full), "same_choice": agree / max(len(examples), 1),
        "mean_choices": statistics.mean(len(e.choices or []) for e in examples),
    }
    print("| per question (median) | seconds |\n|---|---|")
    print(f"| generate the rationale and answer | {figures['generate_s']:.3f} |")
    print(f"| score the choices: sdk (generation context, stepwise) | {figures['sdk_scoring_s']:.3f} |")
    print(f"| score the choices: second llama.cpp with logits_all | {figures['logits_all_scoring_s']:.3f} |")
    print(f"\n{len(examples)} questions, {figures['mean_choices']:.1f} choices on average, {args.threads} threads; "
          f"both scorers pick the same choice on {figures['same_choice']:.0%}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    peer.close()
    model.close()


if __name__ == "__main__":
    main()
