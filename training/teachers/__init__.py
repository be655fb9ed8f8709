"""Teachers that write rationales: served (OpenAI-compatible) or local (transformers, contrastive)."""

from __future__ import annotations

from rationalizer.http_client import RetryPolicy

from .base import Teacher, TeacherOutput, TeacherRequest, requests_for, wrong_answer
from .config import TeachConfig

__all__ = ["Teacher", "TeacherOutput", "TeacherRequest", "TeachConfig", "load_teacher", "requests_for",
           "wrong_answer"]


def load_teacher(config: TeachConfig) -> Teacher:
    """``http(s)://...`` is a served teacher; anything else is a local HF model (folder or hub id)."""
    if config.teacher.startswith(("http://", "https://")):
        from .served import ServedTeacher

        return ServedTeacher(config.teacher, config.teacher_model or "default", config.api, config.api_key_env,
                             config.in_flight, RetryPolicy(config.retries, config.timeout_s),
                             config.temperature, config.max_new_tokens, config.seed)
    from .local import LocalTeacher

    return LocalTeacher(config.teacher.removeprefix("local:"), config.device, config.contrastive, config.lam,
                        config.alpha, config.batch_size, config.max_new_tokens, config.temperature,
                        config.top_p, config.seed)
