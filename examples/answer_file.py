"""A small app that embeds the SDK: questions in a JSONL file in, answers and rationales out.

Each input line is an object with ``question`` and optionally ``choices`` and
``id`` (the schema of the project's rationale datasets works as is). Each output
line adds ``answer``, ``rationale`` and timing. Results are appended as they
come, and a rerun skips ids already in the output, so a killed run resumes.

    python examples/answer_file.py questions.jsonl answers.jsonl [--model BUNDLE] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rationalizer import InputError, Rationalizer


def done_ids(path: Path) -> set[str]:
    """Ids already answered in ``path`` (a torn last line from a kill is ignored)."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description="Answer every question of a JSONL file.")
    parser.add_argument("questions", type=Path)
    parser.add_argument("answers", type=Path)
    parser.add_argument("--model", default=None, help="bundle folder (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    rows = []
    for number, line in enumerate(args.questions.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row.setdefault("id", str(number))
            rows.append(row)
        except ValueError as exc:
            print(f"{args.questions}:{number}: not JSON ({exc})", file=sys.stderr)
            return 2
    rows = rows[: args.limit]
    skip = done_ids(args.answers)
    model = Rationalizer.load(args.model)
    with args.answers.open("a", encoding="utf-8") as out:
        for i, row in enumerate(rows, start=1):
            if str(row["id"]) in skip:
                continue
            try:
                result = model.rationalize(row["question"], choices=row.get("choices"))
            except InputError as exc:
                print(f"{row['id']}: skipped ({exc})", file=sys.stderr)
                continue
            record = {"id": row["id"], "question": result.question, "choices": result.choices,
                      "answer": result.answer, "rationale": result.rationale, "gold": row.get("answer"),
                      "latency_s": round(result.latency_s, 3), "tokens": result.tokens_generated}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            print(f"[{i}/{len(rows)}] {row['id']}: {result.answer}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
