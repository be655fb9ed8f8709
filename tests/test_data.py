"""The training data layer: JSONL and CSV, field mapping, validation, splits, de-duplication."""

import json

import pytest

from conftest import write_jsonl
from rationalizer.dataset import DataError
from rationalizer.training.data import FieldMap, deduplicate, read_dataset, split_examples, write_examples

ROW = {"id": "1", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no", "rationale": None}


def test_csv_with_other_field_names(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("qid,q,opts,gold,why\n7,Is ice cold?,yes|no,yes,Ice is frozen water.\n"
                    '8,Sum of 2 and 2?,,4,\n9,Pick one,"[""a"", ""b""]",b,\n', encoding="utf-8")
    fields = FieldMap(id="qid", question="q", choices="opts", answer="gold", rationale="why")
    examples, report = read_dataset(path, fields)
    assert [e.id for e in examples] == ["7", "8", "9"] and report.rows == 3
    assert examples[0].choices == ["yes", "no"] and examples[0].rationale == "Ice is frozen water."
    assert examples[1].choices is None and examples[1].answer == "4" and examples[1].rationale is None
    assert examples[2].choices == ["a", "b"]


def test_errors_name_file_and_line_and_skip_invalid_counts_them(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROW) + "\n{broken\n" + json.dumps({**ROW, "question": ""}) + "\n"
                    + json.dumps({**ROW, "id": "2"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON"):
        read_dataset(path)
    examples, report = read_dataset(path, skip_invalid=True)
    assert [e.id for e in examples] == ["1", "2"]
    assert report.invalid == 2 and "d.jsonl:2: not valid JSON (Expecting property name" in report.errors[0]
    assert "d.jsonl:3: 'question' must be non-empty text" in report.errors[1]


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,question,choices,answer\n1,Is it?,yes|no,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.csv:2: answer 'maybe' is not one of the choices"):
        read_dataset(path)


def test_deduplicate_and_deterministic_split(tmp_path):
    rows = [{**ROW, "id": str(i), "question": f"Question number {i}?"} for i in range(200)]
    rows.append({**ROW, "id": "dup", "question": "question  NUMBER 3?"})
    examples, _ = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    unique, dropped = deduplicate(examples)
    assert dropped == 1 and len(unique) == 200
    train, dev = split_examples(unique, 0.1, seed=1)
    train2, dev2 = split_examples(list(reversed(unique)), 0.1, seed=1)
    assert {e.id for e in dev} == {e.id for e in dev2} and 8 <= len(dev) <= 35
    assert {e.id for e in train} | {e.id for e in dev} == {e.id for e in unique}
    assert {e.id for e in split_examples(unique, 0.1, seed=2)[1]} != {e.id for e in dev}


def test_write_examples_round_trips(tmp_path):
    examples, _ = read_dataset(write_jsonl(tmp_path / "d.jsonl", [ROW]))
    write_examples(tmp_path / "out.jsonl", examples)
    again, _ = read_dataset(tmp_path / "out.jsonl")
    assert again == examples
    assert not list(tmp_path.glob(".out.jsonl.*"))  # no temporary file left


def test_teacher_fields_round_trip_and_are_checked(tmp_path):
    taught = {**ROW, "rationale": "Penguins swim.", "kind": "factual", "source": "teacher t",
              "teacher_answer": "no", "teacher_correct": True, "gold_answer": "no"}
    path = write_jsonl(tmp_path / "d.jsonl", [taught, ROW])
    examples, _ = read_dataset(path)
    assert (examples[0].teacher_answer, examples[0].teacher_correct) == ("no", True)
    assert examples[0].extra == {"gold_answer": "no"}
    assert (examples[1].teacher_answer, examples[1].teacher_correct) == (None, None)
    # written back in the file's key order; a row without teacher fields gets none
    assert list(examples[0].to_dict()) == list(taught)
    assert "teacher_answer" not in examples[1].to_dict()
    write_examples(tmp_path / "out.jsonl", examples)
    assert read_dataset(tmp_path / "out.jsonl")[0] == examples
    for bad, message in [({"teacher_correct": "false"}, "'teacher_correct' must be true, false or null"),
                         ({"teacher_answer": ["no"]}, "'teacher_answer' must be text or null")]:
        write_jsonl(path, [ROW, {**taught, **bad}])
        with pytest.raises(DataError, match=rf"d\.jsonl:2: {message}"):
            read_dataset(path)
