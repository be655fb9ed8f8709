"""``rationalize export``: a thin layer over :func:`rationalizer.export.pipeline.run_export`."""

from __future__ import annotations

import time

import click


def _types(value: str | None) -> list[str]:
    return [part.strip().lower() for part in (value or "").split(",") if part.strip()]


@click.command("export")
@click.argument("bundle")
@click.option("--gguf", help="Comma list of f32, f16, bf16, q8_0, q6_k, q5_k_m, q5_0, q4_k_m, q4_0, and "
                             "lora (the adapter alone, applied over the base GGUF).")
@click.option("--onnx", help="Comma list of fp32, int8 (dynamic: int8 weights and activations), int8w and int4 (weight-only MatMulNBits).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the export bundles.")
@click.option("--lora-base", default="f16", show_default=True,
              help="GGUF type of the base written beside a lora export (not used for the embedded default base).")
@click.option("--dev", type=click.Path(exists=True, dir_okay=False),
              help="Dev file for the fidelity report (agreement, accuracy, speed).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Dev questions to use.")
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), help="Generation budget per dev question.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads (quantization, verification, report).")
def export_command(bundle: str, gguf: str | None, onnx: str | None, out: str, lora_base: str, dev: str | None,
                   limit: int, max_new_tokens: int | None, threads: int | None) -> None:
    """Export BUNDLE ('default': the embedded model) to quantized GGUF and ONNX bundles, verified against fp32.

    \b
      rationalize export runs/student --gguf q8_0,q4_k_m --onnx int8 --out exports/
      rationalize export default --gguf f16,q8_0 --onnx fp32,int8 --out exports/ --dev dev.jsonl

    Each output is one bundle folder in OUT (gguf-q8_0, onnx-int8...) that
    `rationalize --model OUT/gguf-q8_0` loads. A failed or killed export
    leaves no partial bundle behind.
    """
    from rationalizer.export.config import ExportConfig
    from rationalizer.export.pipeline import run_export
    from rationalizer.training.base_student import resolve_base

    started = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - started:7.1f}s] {message}", err=True)

    config = ExportConfig(None if bundle == "default" else bundle, out, _types(gguf), _types(onnx), lora_base,
                          threads, dev, limit, max_new_tokens)
    outcome = run_export(config, lambda spec: resolve_base(spec, progress), progress)
    for result in outcome.results:
        click.echo(f"{result.folder}\t{result.format} {result.quantization}\t{result.size_bytes / 1e6:.1f} MB\t"
                   f"greedy match {result.check.greedy_match:.2f}")
    if outcome.fidelity:
        from rationalizer.export.fidelity import markdown_table

        click.echo("")
        click.echo(markdown_table(outcome.fidelity), nl=False)
        click.echo(f"report: {', '.join(str(p) for p in outcome.report.values())}", err=True)
