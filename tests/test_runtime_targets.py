"""The runtime-targets benchmark script: each target compares a row with the peer of the same bundle."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path

from rationalizer.bench.suite import BenchRow, markdown

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "runtime_targets.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("runtime_targets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(runner: str, fmt: str, quant: str, speed: float, bound: float | None = None) -> dict:
    r = BenchRow("b", runner, fmt, quant, "cpu", 100, {"decode_tok_s": speed, "load_s": 1.0, "ttft_s": 0.1,
                                                        "latency_s": 1.0, "peak_rss_mb": 100.0})
    r.bound_tok_s = bound
    return dict(asdict(r), bound_fraction=r.bound_fraction)  # as run_bench returns its rows


def test_targets_compare_against_the_peer_of_the_same_bundle():
    script = _load_script()
    rows = [_row("sdk (llamacpp)", "gguf", "q8_0", 96.0, 120.0), _row("llama-cpp-python", "gguf", "q8_0", 100.0),
            _row("sdk (onnx)", "onnx", "int8", 60.0), _row("optimum", "onnx", "int8", 30.0),
            _row("transformers", "onnx", "fp32", 40.0)]
    checks = script.targets(rows)
    got = {t["target"].split(" (")[0]: (t["value"], t["met"]) for t in checks}
    assert got["GGUF decode vs bandwidth bound"] == (0.8, True)
    assert got["SDK slower than raw llama-cpp-python"] == (0.04, True)
    assert got["ONNX loop vs optimum generate"] == (2.0, True)
    assert got["ONNX int8 vs transformers fp32"] == (1.5, False)
    table = script.targets_table(checks)
    assert "| ONNX int8 vs transformers fp32 (b onnx int8 cpu) | 1.5 | >= 2.0 | NO |" in table.splitlines()
    # the suite's own table has the rows only
    result = {"bandwidth_gb_s": 10.0, "threads": 1, "tokens": 4, "reps": 1, "rows": rows}
    assert "| target |" not in markdown(result)
