"""The ONNX Runtime backend: an exported decoder with KV cache, driven by our own loop.

Only onnxruntime, tokenizers and numpy are used at run time: no torch,
transformers or optimum. The model is the one optimum exports for
``text-generation-with-past`` (inputs ``input_ids``, ``attention_mask``,
optionally ``position_ids``, and ``past_key_values.N.key/value``; outputs
``logits`` and ``present.N.key/value``), or the one onnxruntime-genai's model
builder writes (the same names, no ``position_ids``: its GroupQueryAttention
derives the positions and ``seqlens_k`` from the attention mask, and declares the
head size symbolically, read here from ``genai_config.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle import Bundle
from ..errors import ModelFileError, UserError
from ..prompt_text import tokenizers_encoder
from .base import default_threads
from .decode_loop import SteppingBackend
from .stop_ids import stop_token_ids

_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def _imports():
    try:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise UserError(f"the ONNX backend needs onnxruntime and tokenizers: pip install 'rationalizer[onnx]' ({exc})") from None
    return np, ort, Tokenizer


def _json(path: Path, name: str | None = None) -> dict:
    """A JSON object file of the staged view; {} when the manifest does not list it (so it is not
    there). ``name`` is what errors call it (the bundle's path, not the temporary view's)."""
    name = name or str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise ModelFileError(f"{name}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    except OSError as exc:
        raise ModelFileError(f"{name}: cannot read it ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{name}: expected a JSON object")
    return data


def _kv_shape(shape: list, config: dict) -> tuple[int, int]:
    """(KV heads, head size) of a ``past_key_values`` input: its own dims where they are numbers, else the
    model config's (the builder names the head size ``kv_cache_dim``)."""
    dims = []
    for index, keys in ((1, ("num_key_value_heads", "num_attention_heads")), (3, ("head_size", "head_dim"))):
        dim = shape[index] if len(shape) == 4 else None
        if not isinstance(dim, int):
            dim = next((config[k] for k in keys if isinstance(config.get(k), int)), None)
            if dim is None and index == 3 and isinstance(config.get("hidden_size"), int) \
                    and isinstance(config.get("num_attention_heads"), int) and config["num_attention_heads"] > 0:
                dim = config["hidden_size"] // config["num_attention_heads"]
        if not isinstance(dim, int) or dim < 1:
            raise ModelFileError(f"the ONNX model's KV cache shape {shape} has a symbolic dimension {index} and no "
                                 "genai_config.json or config.json gives it")
        dims.append(dim)
    return dims[0], dims[1]


class OnnxBackend(SteppingBackend):
    """Runs an exported ONNX decoder on CPU, or on CUDA with onnxruntime-gpu."""

    name = "onnx"
    formats = ("onnx",)
    devices = ("cpu", "cuda")
    parallel_calls = False

    def __init__(self, session, tokenizer, stop_ids: set[int], context_length: int, pad_id: int = 0,
                 batch_size: int = 8, model_config: dict | None = None) -> None:
        np, _, _ = _imports()
        super().__init__(tokenizer, tokenizers_encoder(tokenizer), stop_ids, context_length, pad_id, batch_size)
        self._np = np
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        self._past_names = sorted((n for n in inputs if n.startswith("past_key_values.")),
                                  key=lambda n: (int(n.split(".")[1]), n.endswith("value")))
        if "input_ids" not in inputs or not self._past_names:
            raise ModelFileError("the ONNX model is not a decoder with KV cache (inputs input_ids and past_key_values.*)")
        first = inputs[self._past_names[0]]
        self._kv_heads, self._head_dim = _kv_shape(first.shape, model_config or {})
        self._kv_dtype = np.dtype(_NUMPY_TYPES.get(first.type, "float32"))
        self._has_positions = "position_ids" in inputs
        self._has_mask = "attention_mask" in inputs
        self._present_names = [n.replace("past_key_values", "present") for n in self._past_names]
        # left padding needs explicit positions; a graph without position_ids runs one prompt at a time
        # (the builder's GroupQueryAttention takes every row's tokens as starting at position 0 of its
        # cache: a left-padded row then gets other positions and attends to its padding; measured on the
        # tiny test model, logits off by 0.36 where one row alone matches HF to 1e-7)
        self.max_batch_size = batch_size if self._has_positions else 1

    @classmethod
    def gpu_available(cls) -> bool:
        """True when onnxruntime offers the CUDA execution provider."""
        try:
            import onnxruntime as ort
        except ImportError:
            return False
        return "CUDAExecutionProvider" in ort.get_available_providers()

    @classmethod
    def open(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "OnnxBackend":
        """Create an inference session over the bundle's ``onnx`` model and load its tokenizer."""
        np, ort, Tokenizer = _imports()
        model_path = bundle.main_file("onnx")
        folder = model_path.parent  # named in errors; everything is read from the staged view of listed files
        if device == "cuda" and not cls.gpu_available():
            raise UserError("device 'cuda' asked, but this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        # a view holding only the listed files: external data, tokenizer and configs next to model.onnx
        # are then the files verify checked, never an unlisted file that happens to lie in the folder
        with bundle.staged("onnx") as view:
            try:
                session = ort.InferenceSession(str(view / model_path.name), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
                detail = str(exc).replace(str(view), str(folder)).splitlines()[0][:300]
                raise ModelFileError(f"{model_path}: ONNX Runtime cannot load this model; truncated, corrupt, not "
                                     f"ONNX or its external data not listed ({detail})") from None
            tokenizer_path = folder / "tokenizer.json"
            if not (view / "tokenizer.json").is_file():
                raise ModelFileError(f"{bundle.folder}: the manifest lists no tokenizer.json beside "
                                     f"{model_path.name}; an ONNX bundle must carry its tokenizer")
            try:
                tokenizer = Tokenizer.from_file(str(view / "tokenizer.json"))
            except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
                raise ModelFileError(f"{tokenizer_path}: cannot load the tokenizer ({str(exc).splitlines()[0]})") from None
            config = _json(view / "config.json", str(folder / "config.json"))
            generation = _json(view / "generation_config.json", str(folder / "generation_config.json"))
            genai = _json(view / "genai_config.json", str(folder / "genai_config.json")).get("model")
        genai = genai if isinstance(genai, dict) else {}
        eos_fields = [config.get("eos_token_id"), generation.get("eos_token_id"), genai.get("eos_token_id")]
        stop_ids = stop_token_ids(eos_fields, bundle.manifest.prompt.stop, tokenizer.token_to_id)
        pad = config.get("pad_token_id")
        pad_id = int(pad) if isinstance(pad, int) else min(stop_ids, default=0)
        decoder = genai.get("decoder") if isinstance(genai.get("decoder"), dict) else {}
        shapes = {**config, **{k: decoder[k] for k in ("num_key_value_heads", "head_size") if k in decoder}}
        return cls(session, tokenizer, stop_ids, bundle.manifest.generation.context_length, pad_id,
                   model_config=shapes)

    def empty_past(self, batch: int = 1) -> dict:
        """A KV cache holding no tokens, for ``batch`` rows."""
        shape = (batch, self._kv_heads, 0, self._head_dim)
        return {name: self._np.zeros(shape, dtype=self._kv_dtype) for name in self._past_names}

    def batch_step(self, input_ids, attention_mask, position_ids, past):
        """Run the decoder on ``input_ids [B, n]``; return (last-position logits ``[B, vocab]``, new cache)."""
        np = self._np
        feed = {"input_ids": input_ids, **(past if past is not None else self.empty_past(input_ids.shape[0]))}
        if self._has_mask:
            feed["attention_mask"] = attention_mask
        if self._has_positions:
            feed["position_ids"] = position_ids
        outputs = self.session.run(["logits", *self._present_names], feed)
        return outputs[0][:, -1].astype(np.float32), dict(zip(self._past_names, outputs[1:]))

    def forward(self, ids: list[int], past: dict, position: int):
        """Run the decoder on ``ids`` after ``position`` cached tokens; return (last logits, new cache)."""
        np = self._np
        total = position + len(ids)
        logits, new_past = self.batch_step(np.asarray([ids], dtype=np.int64), np.ones((1, total), dtype=np.int64),
                                           np.arange(position, total, dtype=np.int64)[None, :], past)
        return logits[0], new_past

    def prefill(self, ids: list[int]):
        """The decoder over ``ids`` from an empty cache: (last logits, cache)."""
        return self.forward(ids, self.empty_past(), 0)

    def step(self, state: dict, token: int, position: int):
        """One token on ``state``; a cache is never changed in place, so a context's stays reusable."""
        return self.forward([token], state, position)

    def close(self) -> None:
        """Drop the inference session."""
        self.session = None
