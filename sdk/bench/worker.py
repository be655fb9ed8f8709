"""One benchmark measurement in a fresh process: ``python -m rationalizer.bench.worker '<json spec>'``.

A fresh process per runner gives each its own load time and peak RSS, with no
model of another runner in memory. The spec names the runner (``sdk``,
``llama-cpp-python``, ``optimum``, ``transformers``, ``onnxruntime-genai``) and what it runs; the last
line of stdout is the result as JSON.

Every runner gets the same prompt text (rendered by the bundle's template) and
decodes greedily. Decode speed comes from a long-generation prompt; the
per-question latency from a few short questions with the bundle's own budget.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any, Callable

STORY = "Write a long, detailed story about a penguin who wants to learn to fly."
QUESTIONS = [
    ("Can a penguin fly?", None),
    ("Is the sun a star?", None),
    ("Where would you keep milk cold?", ["fridge", "oven", "shelf"]),
    ("Would a pear sink in water?", None),
]


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def _prompts(bundle_path: str | None) -> tuple[str, list[str], list[str], int]:
    from rationalizer import Bundle
    from rationalizer.prompting import build_prompt, render_codes, resolve_quality

    manifest = Bundle.load(bundle_path).manifest
    codes = render_codes(manifest.control, resolve_quality(manifest.control, "best"))
    story = build_prompt(manifest.prompt, STORY, None, codes, manifest.control.placement)
    questions = [build_prompt(manifest.prompt, q, c, codes, manifest.control.placement) for q, c in QUESTIONS]
    return story, questions, manifest.prompt.stop, manifest.generation.max_new_tokens


def _sdk(spec: dict[str, Any]) -> dict[str, Any]:
    from rationalizer import Rationalizer

    start = time.perf_counter()
    model = Rationalizer.load(spec["bundle"], backend=spec["backend"], device=spec["device"], threads=spec["threads"])
    load = time.perf_counter() - start
    model.rationalize("Warm up.", max_new_tokens=4)
    runs = [model.rationalize(STORY, max_new_tokens=spec["tokens"]) for _ in range(spec["reps"])]
    latency = [model.rationalize(q, c).latency_s for q, c in QUESTIONS]
    return {"load_s": load, "ttft_s": statistics.median(r.time_to_first_token_s or 0.0 for r in runs),
            "decode_tok_s": statistics.median(r.tokens_per_s or 0.0 for r in runs),
            "generated": runs[0].tokens_generated, "latency_s": statistics.mean(latency),
            "backend": model.backend_name, "device": model.device}


def _llama_cpp(spec: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    from rationalizer import Bundle

    story, questions, stop, budget = _prompts(spec["bundle"])
    bundle = Bundle.load(spec["bundle"])
    start = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(bundle.main_file("gguf")), n_ctx=bundle.manifest.generation.context_length,
                          n_threads=spec["threads"], n_threads_batch=spec["threads"],
                          n_gpu_layers=-1 if spec["device"] == "cuda" else 0, verbose=False)
    load = time.perf_counter() - start
    greedy = dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)

    def run(prompt: str, tokens: int) -> tuple[int, float, float, float]:
        begin = time.perf_counter()
        first, n = None, 0
        for _ in llm.create_completion(prompt, max_tokens=tokens, stop=stop, stream=True, **greedy):
            n += 1
            first = first or time.perf_counter()
        end = time.perf_counter()
        speed = (n - 1) / (end - first) if first and n > 1 else 0.0
        return n, (first or end) - begin, speed, end - begin

    run("Warm up.", 4)
    runs = [run(story, spec["tokens"]) for _ in range(spec["reps"])]
    latency = [run(q, budget)[3] for q in questions]
    return {"load_s": load, "ttft_s": statistics.median(r[1] for r in runs),
            "decode_tok_s": statistics.median(r[2] for r in runs), "generated": runs[0][0],
            "latency_s": statistics.mean(latency)}


def _hf_generate(model, tokenizer, spec: dict[str, Any], load: float, move: Callable) -> dict[str, Any]:
    """Greedy ``generate`` timings: the first token alone, then the whole budget; decode is the difference."""
    story, questions, _stop, budget = _prompts(spec["bundle"])

    def run(prompt: str, tokens: int) -> tuple[int, float]:
        inputs = move(tokenizer(prompt, return_tensors="pt", return_token_type_ids=False))
        begin = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return out.shape[1] - inputs["input_ids"].shape[1], time.perf_counter() - begin

    run("Warm up.", 4)
    firsts, speeds, generated = [], [], 0
    for _ in range(spec["reps"]):
        _, first = run(story, 1)
        generated, total = run(story, spec["tokens"])
        firsts.append(first)
        speeds.append((generated - 1) / max(total - first, 1e-9))
    latency = [run(q, budget)[1] for q in questions]
    return {"load_s": load, "ttft_s": statistics.median(firsts), "decode_tok_s": statistics.median(speeds),
            "generated": generated, "latency_s": statistics.mean(latency)}


def _optimum(spec: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    from rationalizer import Bundle

    folder = Bundle.load(spec["bundle"]).main_file("onnx").parent
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    options.inter_op_num_threads = 1
    provider = "CUDAExecutionProvider" if spec["device"] == "cuda" else "CPUExecutionProvider"
    start = time.perf_counter()
    model = ORTModelForCausalLM.from_pretrained(folder, session_options=options, provider=provider, use_cache=True,
                                                local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    load = time.perf_counter() - start
    return _hf_generate(model, tokenizer, spec, load, lambda x: x.to(model.device))


def _transformers(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=dtype, use_safetensors=True,
                                                 local_files_only=True).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["hf_dir"], local_files_only=True)
    load = time.perf_counter() - start
    with torch.inference_mode():
        return _hf_generate(model, tokenizer, spec, load, lambda x: x.to(device))


def _genai(spec: dict[str, Any]) -> dict[str, Any]:
    """onnxruntime-genai's own Generator on a builder export: the SDK's prompt ids, greedy, its own loop."""
    import onnxruntime_genai as og

    from tokenizers import Tokenizer

    from rationalizer import Bundle
    from rationalizer.prompt_text import tokenizers_encoder

    folder = Bundle.load(spec["bundle"]).main_file("onnx").parent
    story, questions, _stop, budget = _prompts(spec["bundle"])
    encoder = tokenizers_encoder(Tokenizer.from_file(str(folder / "tokenizer.json")))  # the ids the SDK feeds
    story_ids, question_ids = encoder.encode(story), [encoder.encode(q) for q in questions]
    start = time.perf_counter()
    config = og.Config(str(folder))
    config.clear_providers()
    if spec["device"] == "cuda":
        config.append_provider("cuda")
    threads = {"intra_op_num_threads": spec["threads"], "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
    model = og.Model(config)
    load = time.perf_counter() - start

    def run(ids: list[int], tokens: int) -> tuple[int, float, float, float]:
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + tokens)
        begin = time.perf_counter()
        generator = og.Generator(model, params)
        generator.append_tokens(ids)  # the prefill, which also yields the first token's logits
        first, n = None, 0
        while not generator.is_done():
            generator.generate_next_token()
            n += 1
            first = first or time.perf_counter()
        end = time.perf_counter()
        speed = (n - 1) / (end - first) if first and n > 1 else 0.0
        return n, (first or end) - begin, speed, end - begin

    run(question_ids[0], 4)
    runs = [run(story_ids, spec["tokens"]) for _ in range(spec["reps"])]
    latency = [run(ids, budget)[3] for ids in question_ids]
    return {"load_s": load, "ttft_s": statistics.median(r[1] for r in runs),
            "decode_tok_s": statistics.median(r[2] for r in runs), "generated": runs[0][0],
            "latency_s": statistics.mean(latency)}


RUNNERS = {"sdk": _sdk, "llama-cpp-python": _llama_cpp, "optimum": _optimum, "transformers": _transformers,
           "onnxruntime-genai": _genai}


def main() -> None:
    """Run the spec given as the first argument and print its figures as one JSON line."""
    spec = json.loads(sys.argv[1])
    result = RUNNERS[spec["runner"]](spec)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
