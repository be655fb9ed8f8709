"""`import rationalizer` must stay light: no torch, transformers or llama.cpp."""

import subprocess
import sys


def test_import_leaves_heavy_modules_out():
    code = (
        "import sys, rationalizer, rationalizer.cli.main\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum', 'peft', 'llama_cpp', 'onnxruntime', 'llm') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
