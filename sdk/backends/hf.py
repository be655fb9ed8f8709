"""The torch backend: HF checkpoints (safetensors) through transformers, on CPU or GPU.

This is the path right after training, before export. Its generation loop runs
the model step by step with the KV cache so that it streams and stops exactly
as the other backends do. torch and transformers are imported only here, and
only when this backend is used.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from ..bundle import Bundle
from ..errors import BundleError, ModelFileError, UserError
from ..paths import default_base_checkpoint
from ..prompt_text import transformers_encoder
from .base import Backend, GenerationParams, GenerationStats, TokenText, count_token, default_threads
from .batching import generate_prompts


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the torch backend needs torch and transformers: pip install 'rationalizer[train]' ({exc})") from None
    return torch


def base_model_path(spec: str) -> str:
    """A PEFT bundle's base as a local folder: the folder written, a hub id's snapshot already in the
    Hugging Face cache, or the cached default base checkpoint. Nothing is downloaded: a base that is not
    on this machine is a :class:`BundleError` that names it and says how to provide it."""
    if spec != "default":
        local = Path(spec).expanduser()
        if local.is_dir():
            return str(local)
        cached = _hub_snapshot(spec)
        if cached is not None:
            return cached
        raise BundleError(f"the base model {spec!r} is not on this machine and nothing is downloaded at run time; "
                          "write a local checkpoint folder as the manifest's base_model, or put the model in the "
                          "Hugging Face cache beforehand (`hf download " + spec + "` where there is network)")
    path = default_base_checkpoint()
    if not (path / "model.safetensors").exists():
        raise UserError(f"the default base checkpoint is not built yet ({path}); build it with "
                        "`python -c 'from rationalizer.training.base_student import build_default_base as b; b()'`")
    return str(path)


def _hub_snapshot(repo_id: str) -> str | None:
    """The folder of ``repo_id``'s cached snapshot in the Hugging Face cache, looked up offline; None
    when it is not there (or ``repo_id`` is no hub id)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, not a valid repo id, or no huggingface_hub: all mean "not on disk"
        return None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""Any of these makes a folder hold a tokenizer (tokenizer_config.json alone holds no vocabulary)."""


def tokenizer_folder(adapter_dir: Path, base: str | None = None, label: str | Path | None = None) -> str:
    """Where a model's tokenizer lies: ``adapter_dir`` (a staged view of the bundle's listed files) when
    it holds one (the trainer saves it beside the adapter), else the base model's (an adapter shipped
    without a copy of an unchanged tokenizer); :class:`BundleError` when neither has one, naming
    ``adapter_dir`` as ``label`` (the bundle's folder rather than its temporary view)."""
    for folder in (adapter_dir, *([Path(base)] if base is not None else [])):
        if any((folder / name).is_file() for name in TOKENIZER_FILES):
            return str(folder)
    where = f", nor does its base {base} hold one" if base is not None else ""
    raise BundleError(f"{label or adapter_dir}: lists no tokenizer ({', '.join(TOKENIZER_FILES)}){where}; "
                      "a bundle must carry the tokenizer its model was trained with")


def load_hf(bundle: Bundle, device: str = "cpu", fmt: str | None = None, merge: bool = True):
    """(model, tokenizer) from the bundle's ``hf`` files, or its ``peft`` adapter over the base model.

    A LoRA adapter is merged into the base weights in memory (``merge``) because
    inference never needs it separate and unmerged layers cost extra matmuls at
    every token. Weights load from safetensors only, never from pickle files.
    """
    fmt = fmt or ("hf" if "hf" in bundle.formats() else "peft")
    main = bundle.main_file(fmt)
    if main.suffix != ".safetensors":
        # .bin/.pt weights are pickles: loading one can run arbitrary code
        raise BundleError(f"{main}: weights must be .safetensors; pickle checkpoints are refused")
    folder: Path = main.parent  # named in errors; the loaders read only the staged view of listed files
    base_path = base_model_path(bundle.manifest.base_model) if fmt == "peft" else None
    torch = _torch()
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if device == "cpu" else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    with bundle.staged(fmt) as view:
        if fmt == "peft" and not (view / "adapter_config.json").is_file():
            raise BundleError(f"{folder}: the manifest lists no adapter_config.json beside the adapter weights")
        def first_line(exc: BaseException) -> str:  # errors name the bundle's folder, not the temporary view
            return (str(exc).replace(str(view), str(folder)).splitlines() or [type(exc).__name__])[0][:300]

        source = tokenizer_folder(view, base_path, label=folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except Exception as exc:  # tokenizer files are data: any failure to read them is a bad file
            raise ModelFileError(f"{folder if source == str(view) else source}: cannot load the tokenizer "
                                 f"({first_line(exc)})") from None
        try:
            if fmt == "hf":
                model = AutoModelForCausalLM.from_pretrained(view, local_files_only=True, use_safetensors=True, dtype=dtype)
            else:
                from peft import PeftModel

                base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True, use_safetensors=True,
                                                            dtype=dtype)
                model = PeftModel.from_pretrained(base, view, is_trainable=False, local_files_only=True)
                if merge:
                    model = model.merge_and_unload()
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise ModelFileError(f"{folder}: transformers cannot load this checkpoint; truncated or corrupt weights? "
                                 f"({first_line(exc)})") from None
    model.to(device).eval()
    return model, tokenizer


class TorchBackend(Backend):
    """Runs HF weights with transformers: fp32 on CPU, bf16/fp16 on CUDA."""

    name = "torch"
    formats = ("hf", "peft")
    devices = ("cpu", "cuda")
    parallel_calls = False

    def __init__(self, model, tokenizer, stop_ids: set[int], context_length: int, batch_size: int = 8) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.encode = transformers_encoder(tokenizer).encode
        self.stop_ids = stop_ids
        self.context_length = context_length
        self._lock = threading.Lock()
        self.max_batch_size = batch_size
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(stop_ids, default=0)

    @classmethod
    def gpu_available(cls) -> bool:
        """True when torch sees a CUDA device."""
        try:
            import torch
        except ImportError:
            return False
        return torch.cuda.is_available()

    @classmethod
    def open(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "TorchBackend":
        """Load the bundle's HF checkpoint on ``device``."""
        torch = _torch()
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("device 'cuda' asked, but torch sees no CUDA GPU")
        if device == "cpu":
            torch.set_num_threads(threads or default_threads())
        model, tokenizer = load_hf(bundle, device, fmt)
        return cls.from_model(model, tokenizer, bundle.manifest)

    @classmethod
    def from_model(cls, model, tokenizer, manifest) -> "TorchBackend":
        """Wrap a model already in memory (the trainer evaluates its policy this way)."""
        stop_ids = {i for i in _as_list(model.generation_config.eos_token_id) + [tokenizer.eos_token_id] if i is not None}
        vocab = tokenizer.get_vocab()
        stop_ids |= {vocab[s] for s in manifest.prompt.stop if s in vocab}
        return cls(model, tokenizer, stop_ids, manifest.generation.context_length)

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` as the model sees it (control tokens only from a template's :class:`Prompt`)."""
        return len(self.encode(text))

    def stream(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        """Generate after ``prompt``; calls from several threads take turns."""
        with self._lock:
            yield from self._stream_locked(prompt, params, stats)

    def _stream_locked(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        torch = _torch()
        ids = torch.tensor([self.encode(prompt)], device=self.model.device)
        stats.prompt_tokens = ids.shape[1]
        budget = min(params.max_new_tokens, self.context_length - ids.shape[1])
        stats.finish_reason = "length"
        if budget < 1:
            return
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.model.device)
            generator.manual_seed(params.seed if params.seed is not None else int(time.time_ns() % 2**31))
        text = TokenText(self._decode, params.stop)
        past = None
        with torch.inference_mode():
            step_input = ids
            while stats.tokens < budget:
                out = self.model(step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1].float()
                token = _pick(torch, logits, params, generator)
                if token in self.stop_ids:
                    stats.finish_reason = "stop"
                    break
                count_token(stats, params, lambda: float(torch.log_softmax(logits, -1)[token]))
                piece = text.add(token)
                if piece:
                    yield piece
                if text.stopped:
                    stats.finish_reason = "stop"
                    break
                step_input = torch.tensor([[token]], device=self.model.device)
        rest = text.finish()
        if rest:
            yield rest

    def batch_step(self, input_ids, attention_mask, position_ids, past):
        """One forward pass over ``input_ids [B, n]`` (numpy); (last-position logits ``[B, vocab]``, new cache)."""
        torch = _torch()
        device = self.model.device
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids).to(device),
                             attention_mask=torch.from_numpy(attention_mask).to(device),
                             position_ids=torch.from_numpy(position_ids).to(device),
                             past_key_values=past, use_cache=True)
        return out.logits[:, -1].float().cpu().numpy(), out.past_key_values

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each continuation after its context, stepping on from the
        context's KV cache (cropped back to the context before each continuation)."""
        from .scoring import stepwise_loglikelihoods

        torch = _torch()
        device = self.model.device

        def forward(ids: list[int], past):
            with torch.inference_mode():
                out = self.model(torch.tensor([ids], device=device), past_key_values=past, use_cache=True)
            return out.logits[0, -1].float().cpu().numpy(), out.past_key_values

        def run_token(past, token: int, position: int):
            past.crop(position)
            return forward([token], past)

        with self._lock:
            return stepwise_loglikelihoods(pairs, self.encode, self.context_length, lambda ids: forward(ids, None),
                                           run_token)

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def generate_many(self, prompts: list[str], params: list[GenerationParams]) -> list[tuple[str, GenerationStats]]:
        """Generate for several prompts, up to ``max_batch_size`` per forward pass."""
        with self._lock:
            return generate_prompts(self, [self.encode(p) for p in prompts], params, self.context_length,
                                    self.pad_id, self.stop_ids, self._decode)

    def close(self) -> None:
        """Drop the model."""
        self.model = None


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _pick(torch, logits, params: GenerationParams, generator) -> int:
    """Greedy, or temperature + top-p (nucleus) sampling from the logits."""
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
