"""Trust at the command line, with real processes: one writer per teach output, a resumed training
log without repeated steps, the default thread count under real load, and one line (never a
traceback) for bad arguments, bad bases, nonsense configs, damaged outputs and closed pipes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from helpers.fake_openai import FaultyTeacherServer
from rationalizer.backends import cpu_load
from rationalizer.backends.base import default_threads
from rationalizer.cli.main import cli
from rationalizer.training.loop import rewind_log

CLI = [sys.executable, "-m", "rationalizer.cli.main"]
QUESTIONS = [{"id": f"k{i}", "question": f"Is thing {i} a mammal?", "choices": ["yes", "no"], "answer": "yes"}
             for i in range(24)]
TRAIN_ROWS = [{"id": f"r{i}", "question": f"Is thing {i} big?", "choices": ["yes", "no"], "answer": "yes" if i % 2 else "no",
               "rationale": f"Thing {i} is {'big' if i % 2 else 'small'}."} for i in range(16)]


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def assert_one_line(result_stderr: str) -> str:
    text = result_stderr.strip()
    assert "Traceback" not in text and text.startswith("Error: ") and "\n" not in text.split("Error: ", 1)[1], text
    return text


# ---- item 7: concurrent writers and resumed logs ----

def test_a_second_teach_on_the_same_output_is_refused_and_nothing_is_written_twice(tmp_path):
    server = FaultyTeacherServer(delay_s=0.15)
    try:
        data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS)
        out = tmp_path / "out.jsonl"
        cmd = CLI + ["teach", "--data", str(data), "--teacher", server.url, "--out", str(out), "--in-flight", "1"]
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not out.exists() or not out.read_text():  # the first writer holds the lock and has written
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.05)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert first.poll() is None, "the first writer ended too soon for the test to mean anything"
        assert second.returncode == 2
        message = assert_one_line(second.stderr.splitlines()[-1])
        assert f"being written by another teach process (pid {first.pid})" in message
        assert first.wait(timeout=120) == 0, first.stderr.read()
        ids = [r["id"] for r in lines(out)]
        assert sorted(ids) == sorted(q["id"] for q in QUESTIONS)  # each row once
        # the lock dies with its holder, however it ends: a rerun after the first one may write again
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        assert len(lines(out)) == len(QUESTIONS)
    finally:
        server.close()


def test_a_lock_left_by_a_killed_writer_does_not_block_the_rerun(tmp_path):
    server = FaultyTeacherServer(delay_s=0.2)
    try:
        data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:12])
        out = tmp_path / "out.jsonl"
        cmd = CLI + ["teach", "--data", str(data), "--teacher", server.url, "--out", str(out), "--in-flight", "1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while len(lines(out)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert (tmp_path / "out.jsonl.lock").read_text().strip() == str(proc.pid)
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        assert sorted(r["id"] for r in lines(out)) == sorted(q["id"] for q in QUESTIONS[:12])
    finally:
        server.close()


def test_rewind_log_keeps_the_checkpointed_steps_and_drops_a_torn_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rows = [{"kind": "eval", "step": 0}] + [{"kind": "train", "step": s, "loss": 1.0 / s} for s in range(1, 6)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "train", "st', encoding="utf-8")
    assert rewind_log(log, lambda row: row["step"] <= 3) == 3  # steps 4 and 5, and the torn line
    assert lines(log) == rows[:4]
    assert rewind_log(log, lambda row: True) == 0


def test_train_resume_after_kill_9_logs_every_step_once(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS)
    out = tmp_path / "student"
    cmd = CLI + ["train", "sft", "--base", str(tiny_bundle / "hf"), "--train", str(data), "--out", str(out),
                 "--max-steps", "10", "--batch-size", "4", "--checkpoint-every", "3", "--seed", "3"]
    log = out / "metrics.jsonl"

    def steps():
        return [r["step"] for r in lines(log)] if log.exists() else []

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while (len(steps()) < 4 or len(steps()) % 3 == 0) and time.time() < deadline:  # past a checkpoint, before the next
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    logged = steps()
    assert len(logged) % 3 != 0 and len(logged) < 10, logged  # steps past the last checkpoint are in the log
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step-" in resumed.stdout + resumed.stderr
    assert steps() == list(range(1, 11))


# ---- item 8: threads under load ----

def test_default_threads_leaves_out_cores_a_real_busy_loop_keeps_busy():
    cpus = sorted(cpu_load.allowed_cpus())[:2]
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    # Pin two busy loops and the measuring process to the same two CPUs: on them, nothing is free,
    # whatever else the machine runs. Without the load check this process would choose 2 threads.
    pin = f"import os; os.sched_setaffinity(0, {set(cpus)!r}); "
    loops = [subprocess.Popen([sys.executable, "-c", pin + "\nwhile True: pass"]) for _ in cpus]
    try:
        time.sleep(0.5)
        probe = subprocess.run([sys.executable, "-c", pin + "from rationalizer.backends.base import default_threads;"
                                "from rationalizer.backends import cpu_load;"
                                "print(default_threads(), round(cpu_load.busy_cores(os.sched_getaffinity(0)), 2))"],
                               capture_output=True, text=True, timeout=60)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    threads, busy = probe.stdout.split()
    assert float(busy) >= 1.5 and threads == "1", probe.stdout


@pytest.mark.parametrize("cores, busy, quota, expected", [
    (2, 0.0, None, 2), (2, 0.6, None, 1), (2, 2.0, None, 1), (4, 0.3, None, 4), (4, 1.5, None, 2),
    (8, 0.0, None, 4), (8, 5.0, None, 3), (8, 7.9, None, 1), (16, 0.0, 1.5, 2), (16, 8.0, 2.0, 1),
])
def test_default_threads_arithmetic(monkeypatch, cores, busy, quota, expected):
    # The measured figures are replaced by fixed ones (the real ones are not repeatable); the rule is real.
    monkeypatch.setattr(cpu_load, "allowed_cpus", lambda: set(range(cores)))
    monkeypatch.setattr(cpu_load, "cgroup_cpu_limit", lambda path="": quota)
    monkeypatch.setattr(cpu_load, "busy_cores", lambda cpus, window_s=0.1, path="": busy)
    assert default_threads() == expected


def test_cpu_figures_are_read_from_kernel_files(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 30 0 10 50 10 0 0 0 0 0\ncpu1 1 2 3 4 5 6 7 8 9 10\nintr 5\n")
    assert cpu_load.cpu_times(stat) == {0: (40, 100), 1: (27, 36)}
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cpu_load.cgroup_cpu_limit(quota) == 1.5
    quota.write_text("max 100000\n")
    assert cpu_load.cgroup_cpu_limit(quota) is None
    assert cpu_load.cgroup_cpu_limit(tmp_path / "absent") is None
    assert 0.0 <= cpu_load.busy_cores(cpu_load.allowed_cpus(), window_s=0.05) <= len(cpu_load.allowed_cpus())


# ---- item 9: one line, never a traceback ----

def test_arguments_that_are_not_utf8_are_one_line(tmp_path):
    for args in ([b"\xff"], [b"Is it \xe9t\xe9?", "--choices", "yes|no"], ["info", b"/tmp/\xc3"]):
        done = subprocess.run(CLI + args, capture_output=True, timeout=60)
        assert done.returncode == 2
        message = assert_one_line(done.stderr.decode())
        assert "is not UTF-8 text (byte 0x" in message


def test_closing_the_pipe_early_is_not_an_error():
    # `rationalize ... | head -c 3`: the reader goes away; closing at once makes the race certain
    for args in (["info"], ["Is ice cold?", "--max-tokens", "4"], ["Is ice cold?", "--max-tokens", "8", "--stream"]):
        proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0 and stderr == "", (args, stderr)


def test_a_base_that_is_not_on_disk_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: a hub id is not there
    data = write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS)
    for base in ("/nonexistent", "someone/some-model", str(data)):
        result = CliRunner().invoke(cli, ["train", "sft", "--base", base, "--train", str(data), "--out",
                                          str(tmp_path / "o"), "--max-steps", "1"])
        assert result.exit_code == 2, result.output
        assert_one_line(result.stderr)
        assert f"base model {base!r}" in result.stderr


@pytest.mark.parametrize("settings, named", [
    ({"max_steps": -5}, "max_steps must be at least 1"), ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"learning_rate": -1}, "learning_rate must be above 0"), ({"warmup_ratio": 3}, "warmup_ratio"),
    ({"epochs": 0}, "epochs must be above 0"), ({"lora": {"r": 0}}, "lora.r"), ({"seed": -1}, "seed"),
    ({"eval_every": 0}, "eval_every"), ({"max_steps": 10**400}, "max_steps"), ({"train_limits": [-2]}, "train_limits"),
    ({"schedule": "sideways"}, "schedule must be one of"),
])
def test_nonsense_training_settings_are_one_line_and_nothing_is_written(tmp_path, settings, named):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"train": ["t.jsonl"], "out": str(tmp_path / "o"), **settings}))
    result = CliRunner().invoke(cli, ["train", "sft", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert named in assert_one_line(result.stderr)
    assert not (tmp_path / "o").exists()


def test_config_files_that_are_not_json_objects_are_one_line(tmp_path):
    config = tmp_path / "c.json"
    for content in (b"\xff{}", b"[1, 2]", b"[" * 100_000, b'{"max_steps": ' + b"9" * 5000 + b"}"):
        config.write_bytes(content)
        result = CliRunner().invoke(cli, ["train", "sft", "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert_one_line(result.stderr)


def test_teach_output_with_a_line_that_is_not_utf8_is_refused_by_line(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:2])
    out = tmp_path / "out.jsonl"
    out.write_bytes(json.dumps({**QUESTIONS[0], "rationale": "r", "kind": "factual"}).encode() + b"\n\xff\xfe junk\n")
    before = out.read_bytes()
    result = CliRunner().invoke(cli, ["teach", "--data", str(data), "--out", str(out), "--teacher", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2
    assert f"{out}:2: not UTF-8 text" in assert_one_line(result.stderr.splitlines()[-1])
    assert out.read_bytes() == before


# ---- item 10 (command-line parts) ----

def test_teach_refuses_to_write_into_its_own_data(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:2])
    before = data.read_bytes()
    os.link(data, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(data)
    (tmp_path / "in.rejected.jsonl").symlink_to(data)
    for out, data_arg in ((data, data), (tmp_path / "hard.jsonl", data), (tmp_path / "soft.jsonl", data),
                          (tmp_path / "in.jsonl", tmp_path / "hard.jsonl")):
        result = CliRunner().invoke(cli, ["teach", "--data", str(data_arg), "--out", str(out),
                                          "--teacher", "http://127.0.0.1:9/v1"])
        assert result.exit_code == 2, result.output
        assert "would write into the --data file" in assert_one_line(result.stderr.splitlines()[-1])
    data.unlink()  # in.rejected.jsonl still points at it: the rejected rows would land in the data
    (tmp_path / "q.jsonl").write_bytes(before)
    (tmp_path / "in.rejected.jsonl").unlink()
    (tmp_path / "in.rejected.jsonl").symlink_to(tmp_path / "q.jsonl")
    result = CliRunner().invoke(cli, ["teach", "--data", str(tmp_path / "q.jsonl"), "--out", str(data),
                                      "--teacher", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2 and "would write into the --data file" in result.stderr
    assert (tmp_path / "q.jsonl").read_bytes() == before


def test_a_dev_loss_that_cannot_be_computed_says_na(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS[:8])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{**r, "rationale": None} for r in TRAIN_ROWS[:2]])
    out = tmp_path / "student"
    result = CliRunner().invoke(cli, ["train", "sft", "--base", str(tiny_bundle / "hf"), "--train", str(data), "--dev",
                                      str(dev), "--out", str(out), "--max-steps", "1", "--batch-size", "4",
                                      "--eval-every", "1", "--eval-samples", "2"])
    assert result.exit_code == 0, result.output
    assert "dev loss n/a" in result.output and "dev loss 0.0000" not in result.output
    evals = [r for r in lines(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 1]
    assert all(r["dev_loss"] is None and isinstance(r["dev_accuracy"], float) for r in evals)
