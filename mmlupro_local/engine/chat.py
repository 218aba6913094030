"""Chat templates from GGUF metadata, rendered in llama-cpp-python's sandboxed Jinja."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mmlupro_local.engine import EngineError
from mmlupro_local.model.gguf import GgufInfo

Message = dict[str, str]  # {"role": ..., "content": ...}
ChatRenderer = Callable[[list[Message]], str]

# Templates that print today's date (Llama 3) would make prompts depend on the day;
# a fixed date keeps reruns identical.
TEMPLATE_DATE = datetime(2025, 1, 1)


def chat_renderer(info: GgufInfo, template: str | None = None) -> ChatRenderer:
    """A function rendering messages with the model's own template (or `template`, a
    user's), ready for generation."""
    template = template or info.chat_template
    if not template:
        raise EngineError(
            f"{info.path.name} has no chat template in its metadata", setting="chat_template"
        )
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=info.token("eos"),
        bos_token=info.token("bos"),
        add_generation_prompt=True,
    )
    formatter.strftime_now = TEMPLATE_DATE.strftime  # type: ignore[method-assign,assignment]

    def render(messages: list[Message]) -> str:
        try:
            return str(formatter(messages=messages).prompt)  # type: ignore[arg-type]
        except Exception as exc:  # jinja errors, raise_exception() in templates
            raise EngineError(f"the chat template of {info.path.name} failed: {exc}") from exc

    return render
