"""Data files as people make them, and as attackers do: BOMs, exact line numbers, and one-line
errors (never a traceback) for lone surrogates, huge numbers and deep nesting, on real files."""

import json

import pytest

from conftest import write_jsonl
from rationalizer.dataset import DataError, example_from_dict, iter_jsonl, read_examples
from rationalizer.training.data import read_dataset

ROW = {"id": "a", "question": "Is ice cold?", "choices": ["yes", "no"], "answer": "yes"}


def one_line_error(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_a_csv_with_a_utf8_bom_keeps_its_first_column(tmp_path):
    # What Excel and LibreOffice write with "CSV UTF-8": the BOM used to glue onto the name 'id'
    path = tmp_path / "sheet.csv"
    path.write_bytes(b"\xef\xbb\xbfid,question,choices,answer\r\nc1,Is ice cold?,yes|no,yes\r\nc2,Is fire cold?,yes|no,no\r\n")
    examples, report = read_dataset(path)
    assert [(e.id, e.question, e.answer) for e in examples] == [("c1", "Is ice cold?", "yes"), ("c2", "Is fire cold?", "no")]
    assert report.invalid == 0
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n")
    assert [e.id for e in read_examples(jsonl)] == ["a"]


def test_utf8_errors_name_the_line_they_are_on(tmp_path):
    # 499 good lines of multi-byte text, then a bad byte on line 500: a chunked decoder said 480 or 412
    lines = [json.dumps({**ROW, "id": f"q{i}", "question": "Is it " + "é" * 40 + "?"}, ensure_ascii=False)
             for i in range(1, 500)]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "bad", "question": "\xff?", "answer": "yes"}\n')
    assert one_line_error(lambda: read_examples(jsonl)).startswith(f"{jsonl}:500: not UTF-8 text (byte 0xff")
    assert one_line_error(lambda: read_dataset(jsonl)).startswith(f"{jsonl}:500: ")
    examples, report = read_dataset(jsonl, skip_invalid=True)
    assert len(examples) == 499 and report.errors[0].startswith(f"{jsonl}:500: ")

    rows = ["id,question,choices,answer"] + [f'q{i},"Is it {"é" * 40}, really?",yes|no,yes' for i in range(2, 500)]
    csv_path = tmp_path / "rows.csv"
    csv_path.write_bytes(("\n".join(rows) + "\n").encode() + b"bad,\xff,yes|no,yes\n")
    assert one_line_error(lambda: read_dataset(csv_path)).startswith(f"{csv_path}:500: not UTF-8 text")


def test_csv_errors_name_the_line_where_the_record_starts(tmp_path):
    # records spanning two lines each: line 2k is where record k starts
    rows = ["id,question,choices,answer"] + [f'q{i},"Is it\nmultiline {i}?",yes|no,yes' for i in range(49)]
    path = tmp_path / "multi.csv"
    path.write_text("\n".join(rows) + '\nhuge,"' + "x" * 140_000 + '",yes|no,yes\n'  # line 100: over csv's field limit
                    + "wide,Is it?,yes|no,yes,surplus\n"  # line 101: a cell the header does not name
                    + "ok,Is it last?,yes|no,no\n", encoding="utf-8")
    assert one_line_error(lambda: read_dataset(path)).startswith(f"{path}:100: not valid CSV (field larger")
    examples, report = read_dataset(path, skip_invalid=True)
    assert [e.id for e in examples][-2:] == ["q48", "ok"] and len(examples) == 50
    assert report.invalid == 2 and report.errors[1].startswith(f"{path}:101: 5 cells, but the header names 4")
    bad_choice = tmp_path / "bad_choice.csv"
    bad_choice.write_text("id,question,choices,answer\nq,Is it?,yes|no,yes\nr,Is it?," + '"' + "[" * 5000 + '"' + ",yes\n")
    assert one_line_error(lambda: read_dataset(bad_choice)).startswith(f"{bad_choice}:3: ")


@pytest.mark.parametrize("line, problem", [
    ('{"id": "b", "question": "\\ud800 why?", "answer": "yes"}', "lone surrogate (\\ud800)"),
    ('{"id": "b", "question": "Why?", "answer": "yes", "x": {"\\udfff": 1}}', "lone surrogate (\\udfff)"),
    ('{"id": "b", "question": "Why?", "answer": ' + "9" * 5000 + "}", "more than 4,300 digits"),
    ("[" * 100_000, "nested too deeply"),
    ('{"id": "b", "question": "Why?", "answer": "yes", "x": ' + "[" * 150 + "]" * 150 + "}", "nested more than 100"),
    ('{"id": "b", "question": "Why?", "answer": "yes", "x": ' + "1" * 4250 + "}", "more than 4,200 digits"),
])
def test_hostile_json_in_a_data_file_is_one_line_naming_file_and_line(tmp_path, line, problem):
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(ROW) + "\n\n" + line + "\n", encoding="utf-8")
    for read in (read_examples, read_dataset, lambda p: list(iter_jsonl(p))):
        message = one_line_error(lambda: read(path))
        assert message.startswith(f"{path}:3: ") and problem in message, message
    examples, report = read_dataset(path, skip_invalid=True)  # the good row survives; the bad one is counted
    assert [e.id for e in examples] == ["a"] and report.invalid == 1


@pytest.mark.parametrize("row", [
    None, 3, "text", [ROW], {}, {**ROW, "answer": float("nan")}, {**ROW, "answer": float("inf"), "choices": None},
    {**ROW, "answer": True}, {**ROW, "id": {"a": 1}}, {**ROW, "id": True}, {**ROW, "kind": ["factual"]},
    {**ROW, "kind": 10**300}, {**ROW, "source": 3}, {**ROW, "choices": [1, 2]}, {**ROW, "choices": "yes|no"},
    {**ROW, "question": "\ud83d"}, {**ROW, "choices": ["yes", "no", "\udc80"]}, {**ROW, "answer": 2**20_000},
    {**ROW, "rationale": ["a"]}, {**ROW, "answer": "maybe"},
])
def test_any_decoded_value_is_an_example_or_a_data_error(row):
    message = one_line_error(lambda: example_from_dict(row, "f.jsonl:7", "line-7"))
    assert message.startswith("f.jsonl:7: ")


def test_a_row_that_contains_itself_is_refused_not_walked_forever():
    row = dict(ROW)
    row["extra"] = [row]
    assert "contains itself" in one_line_error(lambda: example_from_dict(row, "f:1", "x"))


def test_numbers_and_null_ids_still_read(tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", [{**ROW, "id": 7, "answer": 3, "choices": ["3", "4"]},
                                               {**ROW, "id": None, "source": None, "question": "Is 😀 a face?"}])
    first, second = read_examples(path)
    assert (first.id, first.answer) == ("7", "3")
    assert (second.id, second.source, second.question) == ("line-2", "", "Is 😀 a face?")
