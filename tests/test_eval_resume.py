"""`rationalize eval` loses no run to one bad row or a kill: rows checked first, records kept, outputs one set."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer.cli.main import cli
from rationalizer.errors import UserError
from rationalizer.evaluation import RecordStore, load_eval_data
from rationalizer.evaluation.report import read_outputs

TIMING = ("latency_s", "tokens_per_s", "wall_s")


def good(i: int) -> dict:
    return {"id": f"q{i}", "question": f"Can a penguin fly, case {i}?", "choices": ["yes", "no"], "answer": "no",
            "rationale": "Penguins are birds that swim.", "source": "t"}


def bad_rows() -> dict[int, dict | str]:
    """Line number -> a row that the tiny model (512-token context, 4000 characters) cannot take."""
    return {
        3: {**good(3), "question": "x" * 5000},                                         # characters
        5: {**good(5), "choices": [f"c{i}" for i in range(30)], "answer": "c1"},         # number of choices
        6: {**good(6), "question": "penguin " * 450},                                   # tokens, not characters
        8: "{not json",                                                                 # syntax
        9: {**good(9), "answer": "maybe"},                                              # schema
    }


def write_mixed(path: Path, n: int = 10) -> Path:
    bad = bad_rows()
    lines = [bad.get(i, good(i)) for i in range(1, n + 1)]
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in lines), encoding="utf-8")
    return path


def eval_args(bundle, data, out, *extra) -> list[str]:
    return ["eval", str(bundle), "--data", str(data), "--backend", "torch", "--threads", "1", "--simulator", "none",
            "--verifier", "none", "--max-tokens", "8", "--out", str(out), *extra]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def summary_without_timing(summary: dict) -> dict:
    s = json.loads(json.dumps(summary))
    for key in ("latency_s", "tokens_per_s"):
        s["metrics"].pop(key)
    for key in ("wall_time_s", "files"):
        s.pop(key, None)
    return s


def test_every_bad_row_is_named_with_its_line_before_any_generation(tiny_bundle, tmp_path):
    data = write_mixed(tmp_path / "d.jsonl")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, eval_args(tiny_bundle, data, out))
    assert result.exit_code == 2, result.output
    listed = [line for line in result.stderr.splitlines() if line.startswith(f"{data}:")]
    assert [int(line.split(":")[1]) for line in listed] == sorted(bad_rows())
    text = "\n".join(listed)
    assert "the question has 5000 characters" in text and "30 choices" in text and "not valid JSON" in text
    assert "context holds 512" in text  # counted in tokens: 3,600 characters are within the character limit
    assert "answer 'maybe' is not one of the choices" in text
    assert result.stderr.splitlines()[-1].startswith("Error: 5 invalid rows") and "--skip-invalid" in result.stderr
    assert not out.exists()  # refused before the first generation: not even a record store was made


def test_the_listing_is_capped_and_the_rest_counted(tiny_model, tmp_path):
    rows = [good(0)] + [{**good(i), "question": "x" * 4001} for i in range(1, 26)]
    data = load_eval_data(str(write_jsonl(tmp_path / "d.jsonl", rows)), [tiny_model])
    assert len(data.invalid) == 25 and data.lines == [1]
    listing = data.listing()
    assert len(listing) == 21 and listing[19].startswith(f"{tmp_path / 'd.jsonl'}:21:")
    assert listing[20] == "... and 5 more"


def test_skip_invalid_answers_the_good_rows_and_names_the_skipped(tiny_bundle, tmp_path):
    data = write_mixed(tmp_path / "d.jsonl")
    with data.open("a", encoding="utf-8") as handle:  # a lone surrogate is not Unicode text: a bad row too
        handle.write(json.dumps({**good(11), "question": "Is \ud800 ice cold?"}) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, eval_args(tiny_bundle, data, out, "--skip-invalid", "--no-faithfulness"))
    assert result.exit_code == 0, result.output
    assert "skipping 6 invalid rows" in result.stderr and f"{data}:6:" in result.stderr
    assert f"{data}:11: " in result.stderr and "lone surrogate" in result.stderr
    assert "| invalid rows skipped | 6 |" in result.stdout
    (summary,) = read_outputs(out)
    assert summary["n"] == 5 and summary["skipped_rows"]["count"] == 6
    assert [int(m.split(":")[1]) for m in summary["skipped_rows"]["first"]] == sorted([*bad_rows(), 11])
    records = [json.loads(line) for line in (out / "tiny.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 4, 7, 10]
    assert not (out / ".partial").exists()  # published, so nothing is left to resume


def test_kill_9_resumes_where_it_stopped_and_ends_with_the_same_summary(tiny_bundle, tmp_path):
    n = 40
    data = write_jsonl(tmp_path / "d.jsonl", [good(i) for i in range(n)])
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = eval_args(tiny_bundle, data, killed)
    proc = subprocess.Popen([sys.executable, "-m", "rationalizer.cli.main", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = killed / ".partial"
    deadline = time.time() + 120
    try:
        while True:  # until a few records (after the fingerprint line) are on disk
            files = list(partial.glob("*.jsonl")) if partial.exists() else []
            if files and files[0].read_bytes().count(b"\n") >= 5:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no records appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = files[0].read_bytes().count(b"\n") - 1
    assert 4 <= kept < n and not (killed / "summary.json").exists()
    before = [json.loads(line) for line in files[0].read_bytes().split(b"\n")[1:kept + 1]]

    other = CliRunner().invoke(cli, eval_args(tiny_bundle, data, killed, "--limit", "2"))
    assert other.exit_code == 0 and "resuming" not in other.stderr  # other arguments, other records
    assert files[0].exists()  # ... and the interrupted run's records are still there

    resumed = CliRunner().invoke(cli, args)
    assert resumed.exit_code == 0, resumed.output
    done = int(resumed.stderr.split("resuming tiny: ")[1].split(" of")[0])
    assert done == kept  # counted after the kill: a torn last line is no record
    uninterrupted = CliRunner().invoke(cli, eval_args(tiny_bundle, data, whole))
    assert uninterrupted.exit_code == 0 and "resuming" not in uninterrupted.stderr

    def records(folder):
        return [json.loads(line) for line in (folder / "tiny.jsonl").read_text().splitlines()]

    assert len(records(killed)) == n and without_timing(records(killed)) == without_timing(records(whole))
    assert records(killed)[:kept] == before  # kept as they were, timings included: not made again
    assert [summary_without_timing(s) for s in read_outputs(killed)] == \
        [summary_without_timing(s) for s in read_outputs(whole)]
    assert not partial.exists()


def test_a_new_jsonl_beside_an_old_summary_is_detected(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [good(i) for i in range(3)])
    out = tmp_path / "out"
    args = eval_args(tiny_bundle, data, out, "--no-faithfulness")
    assert CliRunner().invoke(cli, args).exit_code == 0
    old_summary = (out / "summary.json").read_bytes()
    assert CliRunner().invoke(cli, [*args, "--seed", "1", "--max-tokens", "4"]).exit_code == 0
    read_outputs(out)  # a finished set is consistent
    # what a kill between the renames of the records and of summary.json leaves
    (out / "summary.json").write_bytes(old_summary)
    with pytest.raises(UserError, match=r"tiny\.jsonl is not the file summary\.json describes"):
        read_outputs(out)
    assert CliRunner().invoke(cli, args).exit_code == 0  # running again rewrites the whole set
    read_outputs(out)


def test_store_cuts_a_torn_line_keeps_whole_records_and_refuses_a_second_writer(tmp_path):
    identity = {"run": "a"}
    store = RecordStore(tmp_path, identity)
    assert store.open() == {}
    for i in range(3):
        store.append({"index": i, "id": f"q{i}"})
    with pytest.raises(UserError, match="another eval with the same arguments"):
        RecordStore(tmp_path, identity).open()
    store.close()
    with store.path.open("ab") as handle:
        handle.write(b'{"index": 3, "id": "q')  # a kill in the middle of a write
    again = RecordStore(tmp_path, identity)
    assert sorted(again.open()) == [0, 1, 2]
    again.append({"index": 3, "id": "q3"})
    again.close()
    assert [json.loads(line) for line in store.path.read_text().splitlines()][1:] == \
        [{"index": i, "id": f"q{i}"} for i in range(4)]
    assert RecordStore(tmp_path, {"run": "b"}).path != store.path  # other arguments, another file
