"""The genai-* exports (onnxruntime-genai's model builder) on a tiny model, run by the SDK's ONNX backend."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY_CONTROL, write_jsonl
from rationalizer import Bundle, Rationalizer
from rationalizer.errors import UserError
from rationalizer.export.config import ExportConfig, GenaiOptions
from rationalizer.export.genai_export import builder_arguments
from rationalizer.export.genai_tokenizer import canonical_byte_level, genai_token_ids
from rationalizer.export.pipeline import run_export

og = pytest.importorskip("onnxruntime_genai")

DEV = [
    {"id": "a", "question": "Can a penguin fly?", "answer": "no"},
    {"id": "b", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge"},
]
PROMPT = "<|im_start|>user\nCan a penguin fly? Choices: yes, no — café 18 apples!<|im_end|>\n<|im_start|>assistant\n"


def _tiny16_bundle(bundle: Path) -> Path:
    """The tiny Llama with head size 16 (onnxruntime's CPU GroupQueryAttention takes multiples of 16 only)."""
    import torch
    from helpers.tiny_model import build_tiny_hf
    from transformers import AutoConfig, LlamaForCausalLM

    hf = build_tiny_hf(bundle / "hf")
    config = AutoConfig.from_pretrained(hf)
    config.hidden_size, config.head_dim, config.intermediate_size = 64, 16, 128
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(hf, safe_serialization=True)
    files = []
    for path in sorted(hf.iterdir()):
        data = path.read_bytes()
        files.append({"path": f"hf/{path.name}", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                      "role": "model" if path.name == "model.safetensors" else "config"})
    files.sort(key=lambda f: f["role"] != "model")
    manifest = {"name": "tiny16", "base_model": "random tiny llama", "files": {"hf": files}, "control": TINY_CONTROL,
                "generation": {"max_new_tokens": 16, "context_length": 512, "max_question_chars": 4000},
                "parser": {"strategies": ["marker", "leading", "mention"]}}
    (bundle / "rationalizer.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


@pytest.fixture(scope="module")
def genai_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("genai")
    source = _tiny16_bundle(root / "bundle")
    dev = write_jsonl(root / "dev.jsonl", DEV)
    config = ExportConfig(str(source), str(root / "out"), onnx=["genai-fp32", "genai-fp16", "genai-int4"], dev=str(dev),
                          threads=1, max_new_tokens=8, genai=GenaiOptions(algo="k_quant", int8_head=True))
    return run_export(config), source, root / "out"


def test_each_genai_export_is_a_verified_bundle_with_its_genai_config(genai_export):
    outcome, _, out = genai_export
    assert sorted(r.label for r in outcome.results) == ["onnx-genai-fp16", "onnx-genai-fp32", "onnx-genai-int4"]
    for result in outcome.results:
        bundle = Bundle.load(result.folder)
        bundle.verify("onnx", "full")
        listed = {f.path: f for f in bundle.files("onnx")}
        assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json"} <= set(listed)
        assert listed["model.onnx"].role == "model" and listed["model.onnx.data"].role == "data"
        assert len(listed["genai_config.json"].sha256) == 64
        info = bundle.manifest.provenance["export"]
        assert info["genai_tokenizer_identical"] is True and info["builder"]["int8_head"] is True and info["builder"]["algo"] == "k_quant"
        assert result.check.tokens_identical
    checks = {r.label: r.check for r in outcome.results}
    fp32 = checks["onnx-genai-fp32"]
    assert fp32.top1_agreement == 1.0 and fp32.greedy_match == 1.0 and fp32.max_abs_logprob_diff < 1e-3
    assert checks["onnx-genai-fp16"].max_abs_logprob_diff < 0.02  # float16 KV cache and weights, run on the CPU
    assert Bundle.load(out / "onnx-genai-fp16").files("onnx")[0].quantization == "genai-fp16"


def test_int4_holds_4_bit_weights_with_an_8_bit_head_shared_with_the_embeddings(genai_export):
    import onnx

    _, _, out = genai_export
    graph = onnx.load(str(out / "onnx-genai-int4" / "model.onnx"), load_external_data=False).graph
    bits = {n.name: [a.i for a in n.attribute if a.name == "bits"][0] for n in graph.node
            if n.op_type in ("MatMulNBits", "GatherBlockQuantized")}
    assert {b for name, b in bits.items() if "lm_head" not in name and "embed" not in name} == {4}
    head = [b for name, b in bits.items() if "lm_head" in name]
    assert head == [8] and any(n.op_type == "GatherBlockQuantized" for n in graph.node)
    ops = {n.op_type for n in graph.node}
    assert "GroupQueryAttention" in ops and "position_ids" not in {i.name for i in graph.input}


def test_fp32_greedy_output_equals_the_hf_models_and_batches_one_prompt_at_a_time(genai_export):
    _, source, out = genai_export
    questions = ["Can a penguin fly?", "Is the sun a star?"]
    with Rationalizer.load(str(source), backend="torch", device="cpu", threads=1) as hf:
        expected = [hf.rationalize(q, max_new_tokens=16) for q in questions]
    with Rationalizer.load(str(out / "onnx-genai-fp32"), backend="onnx", threads=1) as model:
        assert model._backend.max_batch_size == 1  # the builder's graph takes no position_ids
        got = [model.rationalize(q, max_new_tokens=16) for q in questions]
        many = model.rationalize_many(questions, max_new_tokens=16)
    for want, single, batched in zip(expected, got, many):
        assert single.tokens_generated == want.tokens_generated and single.text == want.text
        assert batched.text == want.text


def test_choice_scores_log_probs_and_stop_strings_match_the_hf_model(genai_export):
    from rationalizer.backends import GenerationParams

    _, source, out = genai_export
    choices = ["fridge", "oven", "shelf"]
    greedy = GenerationParams(max_new_tokens=16, logprobs=True)
    with Rationalizer.load(str(source), backend="torch", device="cpu", threads=1) as hf:
        want = hf.choice_logprobs("Where is milk kept cold?", choices)
        prompt = hf.prompt("Can a penguin fly?")
        [(want_text, want_stats)] = hf._backend.generate_many([prompt], [greedy])
    with Rationalizer.load(str(out / "onnx-genai-fp32"), backend="onnx", threads=1) as model:
        got = model.choice_logprobs("Where is milk kept cold?", choices)
        answer = model.rationalize("Where is milk kept cold?", choices, quality="plain")
        [(text, stats)] = model._backend.generate_many([prompt], [greedy])
        stop = want_text[len(want_text) // 2:][:2]
        [(cut, cut_stats)] = model._backend.generate_many([prompt], [GenerationParams(max_new_tokens=16, stop=[stop])])
    assert set(got) == set(choices) and all(abs(got[c] - want[c]) < 1e-3 for c in choices)
    assert answer.answer in choices and answer.quality == {"diversity": 1, "consistency": 5}
    assert text == want_text and abs(stats.logprob_sum - want_stats.logprob_sum) < 1e-3
    assert len(want_text) >= 4 and stop not in cut and want_text.startswith(cut) and cut_stats.finish_reason == "stop"


def test_both_runtimes_tokenize_a_prompt_identically(genai_export):
    _, _, out = genai_export
    folder = out / "onnx-genai-fp32"
    with Rationalizer.load(str(folder), backend="onnx", threads=1) as model:
        prompt = model.prompt("Can a penguin fly? Choices: yes, no — café 18 apples!")  # template's control tokens
        ids = model._backend.encode(prompt)
    assert "<|im_start|>" in prompt and genai_token_ids(folder, [str(prompt)]) == [ids]


def test_a_byte_fallback_tokenizer_is_rewritten_so_genai_reads_it_as_tokenizers_does(genai_export, tmp_path):
    """The default base's GGUF-derived tokenizer.json: byte_fallback on a byte-level BPE."""
    from tokenizers import Tokenizer

    _, _, out = genai_export
    folder = tmp_path / "bundle"
    shutil.copytree(out / "onnx-genai-fp32", folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["byte_fallback"] = True
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    want = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(PROMPT).ids
    assert genai_token_ids(folder, [PROMPT]) != [want]  # what stood in the way
    with_byte_tokens = json.loads(json.dumps(data))
    with_byte_tokens["model"]["vocab"]["<0x41>"] = len(with_byte_tokens["model"]["vocab"])
    assert not canonical_byte_level(with_byte_tokens)  # there the fallback is real: left as it is
    assert canonical_byte_level(data) and not canonical_byte_level(data)
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    fixed = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert fixed.encode(PROMPT).ids == want and genai_token_ids(folder, [PROMPT]) == [want]
    assert fixed.decode(want[3:20]) == Tokenizer.from_str(json.dumps(data)).decode(want[3:20])


def test_fidelity_report_has_rows_for_the_genai_exports(genai_export):
    outcome, _, out = genai_export
    rows = {r.label: r for r in outcome.fidelity}
    assert set(rows) == {"fp32 (torch)", "onnx-genai-fp32", "onnx-genai-fp16", "onnx-genai-int4"}
    assert rows["onnx-genai-fp32"].agreement == 1.0 and rows["onnx-genai-fp32"].n == len(DEV)
    assert "| onnx-genai-int4 |" in (out / "fidelity.md").read_text()


def test_genai_loop_runs_the_bundle_the_sdk_runs(genai_export):
    _, source, out = genai_export
    folder = out / "onnx-genai-fp32"
    with Rationalizer.load(str(folder), backend="onnx", threads=1) as model:
        prompt = str(model.prompt("Is the sun a star?"))
        ids = model._backend.encode(prompt)
        want = model.rationalize("Is the sun a star?", max_new_tokens=8)
    model_og = og.Model(str(folder))
    params = og.GeneratorParams(model_og)
    params.set_search_options(do_sample=False, max_length=len(ids) + 8)
    generator = og.Generator(model_og, params)
    generator.append_tokens(ids)
    new = []
    while not generator.is_done() and len(new) < want.tokens_generated:
        generator.generate_next_token()
        new.append(int(generator.get_next_tokens()[0]))
    assert og.Tokenizer(model_og).decode(new) == want.text


def test_builder_options_follow_the_config_and_refuse_what_the_builder_gets_wrong():
    _, provider, extra = builder_arguments("genai-int4", GenaiOptions(algo="k_quant", block_size=64, int8_head=True,
                                                                      accuracy_level=4), tied=True)
    assert provider == "cpu"
    assert {"algo_config=k_quant", "block_size=64", "accuracy_level=4", "shared_embeddings=true",
            "matmul_mixed_precision=last_matmul:int8"} <= set(extra)
    assert builder_arguments("genai-fp16", GenaiOptions(), tied=True)[:2] == ("fp16", "cuda")
    assert "shared_embeddings=false" in builder_arguments("genai-int8", GenaiOptions(), tied=True)[2]
    with pytest.raises(UserError, match="algo default"):
        builder_arguments("genai-int8", GenaiOptions(algo="rtn"), tied=True)
    with pytest.raises(UserError, match="rtn or k_quant"):
        builder_arguments("genai-int4", GenaiOptions(int8_head=True), tied=True)
    assert "shared_embeddings=false" in builder_arguments("genai-int4", GenaiOptions(int8_head=True), tied=False)[2]
    from rationalizer.errors import ConfigError

    with pytest.raises(ConfigError, match="block_size"):
        GenaiOptions(block_size=48)


def test_bench_times_onnxruntime_genai_next_to_the_sdk_on_a_genai_bundle(genai_export, tmp_path):
    from click.testing import CliRunner

    from rationalizer.cli.main import cli

    _, _, out = genai_export
    report = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", str(out / "onnx-genai-fp32"), "--tokens", "6", "--reps", "1",
                                      "--threads", "1", "--device", "cpu", "--json", str(report)])
    assert result.exit_code == 0, result.output
    rows = {r["runner"]: r for r in json.loads(report.read_text())["rows"]}
    assert {"sdk (onnx)", "onnxruntime-genai", "transformers"} <= set(rows) and "optimum" not in rows
    for row in rows.values():
        assert row["error"] is None, row
        assert row["figures"]["decode_tok_s"] > 0 and row["figures"]["load_s"] > 0


def test_genai_options_round_trip_through_json_in_the_export_config():
    from rationalizer.dataclass_json import from_dict, to_dict

    config = ExportConfig(None, "out", onnx=["genai-int4"], genai=GenaiOptions(algo="rtn", block_size=128,
                                                                               accuracy_level=2, symmetric=False))
    assert from_dict(ExportConfig, json.loads(json.dumps(to_dict(config)))) == config
