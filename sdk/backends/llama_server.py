"""``python -m rationalizer.backends.llama_server ARGS``: llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server ARGS``, the same arguments) with the weights loaded as this project's
llama.cpp backend loads them.

On a CPU with AMX the stock server crashes at its first completion (see
:func:`rationalizer.backends.llamacpp.plain_cpu_buffers`); this entry point keeps its weights in plain
CPU buffers for the whole process. Tests and benchmarks start llama.cpp's server through it.
"""

from __future__ import annotations

import runpy

from .llamacpp import plain_cpu_buffers

if __name__ == "__main__":
    with plain_cpu_buffers():  # the server loads its model inside, before it serves
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
