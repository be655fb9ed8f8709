"""The torch backend: HF checkpoints (safetensors) through transformers, on CPU or GPU.

This is the path right after training, before export. Its generation loop runs
the model step by step with the KV cache so that it streams and stops exactly
as the other backends do. torch and transformers are imported only here, and
only when this backend is used.
"""

from __future__ import annotations

from pathlib import Path

from .. import base_model
from ..bundle import Bundle
from ..errors import BundleError, ModelFileError, UserError
from ..prompt_text import transformers_encoder
from .base import GenerationParams, default_threads
from .decode_loop import SteppingBackend
from .sampling import sampling_seed
from .stop_ids import hf_stop_token_ids


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the torch backend needs torch and transformers: pip install 'rationalizer[train]' ({exc})") from None
    return torch


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
    base_path = base_model.resolve(bundle.manifest.base_model) if fmt == "peft" else None
    torch = _torch()
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if device == "cpu" else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    with bundle.staged(fmt) as view:
        if fmt == "peft" and not (view / "adapter_config.json").is_file():
            raise BundleError(f"{folder}: the manifest lists no adapter_config.json beside the adapter weights")
        def first_line(exc: BaseException) -> str:  # errors name the bundle's folder, not the temporary view
            return (str(exc).replace(str(view), str(folder)).splitlines() or [type(exc).__name__])[0][:300]

        source = base_model.tokenizer_folder(view, base_path, label=folder)
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


class TorchBackend(SteppingBackend):
    """Runs HF weights with transformers: fp32 on CPU, bf16/fp16 on CUDA."""

    name = "torch"
    formats = ("hf", "peft")
    devices = ("cpu", "cuda")
    parallel_calls = False

    def __init__(self, model, tokenizer, stop_ids: set[int], context_length: int, batch_size: int = 8) -> None:
        pad = tokenizer.pad_token_id
        super().__init__(tokenizer, transformers_encoder(tokenizer), stop_ids, context_length,
                         pad if pad is not None else min(stop_ids, default=0), batch_size)
        self.model = model

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
        return cls._load(bundle, fmt, device, threads or default_threads())

    @classmethod
    def open_judge(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "TorchBackend":
        """Load the checkpoint to score texts as a judge. torch's thread count is the whole process's and a
        judge runs beside the model it judges (a trainer's policy), so it is set only when ``threads`` is given."""
        return cls._load(bundle, fmt, device, threads)

    @classmethod
    def _load(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "TorchBackend":
        torch = _torch()
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("device 'cuda' asked, but torch sees no CUDA GPU")
        if device == "cpu" and threads is not None:
            torch.set_num_threads(threads)
        model, tokenizer = load_hf(bundle, device, fmt)
        return cls.from_model(model, tokenizer, bundle.manifest)

    @classmethod
    def from_model(cls, model, tokenizer, manifest) -> "TorchBackend":
        """Wrap a model already in memory (the trainer evaluates its policy this way)."""
        return cls(model, tokenizer, hf_stop_token_ids(model, tokenizer, manifest.prompt.stop),
                   manifest.generation.context_length)

    def _forward(self, ids: list[int], past):
        torch = _torch()
        with torch.inference_mode():
            out = self.model(torch.tensor([ids], device=self.model.device), past_key_values=past, use_cache=True)
        return out.logits[0, -1].float(), out.past_key_values

    def prefill(self, ids: list[int]):
        """The model over ``ids`` from an empty cache: (last logits, a torch tensor on the model's device; cache)."""
        return self._forward(ids, None)

    def step(self, state, token: int, position: int):
        """One token on the cache ``state``, first cropped back to ``position`` tokens (transformers' cache
        grows in place: an earlier continuation scored from the same context left its tokens in it)."""
        state.crop(position)
        return self._forward([token], state)

    def sampler(self, params: GenerationParams):
        """:func:`_pick` on the device, with a torch generator seeded by :func:`sampling_seed`."""
        torch = _torch()
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.model.device)
            generator.manual_seed(int(sampling_seed(params)))
        return lambda logits: _pick(torch, logits, params, generator)

    def token_logprob(self, logits, token: int) -> float:
        """log p(token), computed on the device."""
        return float(_torch().log_softmax(logits, -1)[token])

    def logits_array(self, logits):
        """The logits copied to the CPU as numpy."""
        return logits.cpu().numpy()

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

    def close(self) -> None:
        """Drop the model."""
        self.model = None


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
