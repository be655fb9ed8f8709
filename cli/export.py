"""``rationalize export``: a thin layer over :func:`rationalizer.export.pipeline.run_export`."""

from __future__ import annotations

from dataclasses import replace

import click

from rationalizer.export.config import ExportConfig

from .config_options import options_from
from .reporting import new_progress


@click.command("export")
@click.argument("source", metavar="[BUNDLE]", required=False)
@options_from(ExportConfig, exclude=("source",), names={"dev_limit": "--limit"})
def export_command(config: ExportConfig) -> None:
    """Export BUNDLE ('default': the embedded model) to quantized GGUF and ONNX bundles, verified against fp32.

    \b
      rationalize export runs/student --gguf q8_0,q4_k_m --onnx int8 --out exports/
      rationalize export default --gguf f16,q8_0 --onnx fp32,int8 --out exports/ --dev dev.jsonl
      rationalize export default --onnx genai-fp32,genai-int4 --genai-algo k_quant --out exports/

    genai-* types go through onnxruntime-genai's model builder (its fused graph and
    genai_config.json; the SDK's ONNX backend and onnxruntime-genai both run them).
    Each output is one bundle folder in OUT (gguf-q8_0, onnx-int8...) that
    `rationalize --model OUT/gguf-q8_0` loads. A failed or killed export
    leaves no partial bundle behind.
    """
    from rationalizer.export.pipeline import run_export
    from rationalizer.training.base_student import resolve_or_build

    if config.source == "default":  # the embedded model's name, never a folder of the working directory
        config = replace(config, source=None)
    progress = new_progress()
    try:
        outcome = run_export(config, resolve_or_build, progress)
    finally:
        progress.close()
    for result in outcome.results:
        click.echo(f"{result.folder}\t{result.format} {result.quantization}\t{result.size_bytes / 1e6:.1f} MB\t"
                   f"greedy match {result.check.greedy_match:.2f}")
    if outcome.fidelity:
        from rationalizer.export.fidelity import markdown_table

        click.echo("")
        click.echo(markdown_table(outcome.fidelity), nl=False)
        click.echo(f"report: {', '.join(str(p) for p in outcome.report.values())}", err=True)
