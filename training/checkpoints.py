"""Training checkpoints: adapter weights (safetensors), optimizer state and progress, written atomically.

Optimizer and scheduler state are tensors and numbers only, saved with
``torch.save`` and read back with ``weights_only=True``, so a checkpoint never
unpickles code.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``folder/step-N`` (via a temporary folder and a rename) and keep the newest ``keep``."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".step-", dir=folder))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(weights, str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    done = [p for p in sorted(folder.glob("step-*")) if (p / "state.json").exists()]
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore adapter weights, optimizer and scheduler; return the saved progress."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter.safetensors")))
    states = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    return json.loads((path / "state.json").read_text())
