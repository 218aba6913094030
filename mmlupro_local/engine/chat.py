"""Chat templates from GGUF metadata, rendered in llama-cpp-python's sandboxed Jinja."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from mmlupro_local.engine import EngineError
from mmlupro_local.model.gguf import GgufInfo

Message = dict[str, str]  # {"role": ..., "content": ...}
ChatRenderer = Callable[[list[Message]], str]

# Templates that print today's date (Llama 3) would make prompts depend on the day;
# a fixed date keeps reruns identical.
TEMPLATE_DATE = datetime(2025, 1, 1)


Thinking = Literal["on", "off", "low", "medium", "high"]
THINKING: tuple[Thinking, ...] = get_args(Thinking)
EFFORTS = ("low", "medium", "high")
# the variables chat templates switch thinking with: Qwen3, GLM-4.5, SmolLM3 and others
# (`enable_thinking`), DeepSeek-V3.1 and Granite (`thinking`), gpt-oss (`reasoning_effort`)
SWITCHES = ("enable_thinking", "thinking")
EFFORT = "reasoning_effort"


@dataclass(frozen=True)
class TemplateSwitches:
    """What a chat template lets a caller set about thinking."""

    switch: str | None  # the variable that turns it on or off
    effort: bool  # it reads reasoning_effort
    thinks: bool  # it writes or opens think blocks

    def variables(self, thinking: Thinking | None, name: str) -> dict[str, Any]:
        """The template variables that give `thinking` (None: the template's default);
        an EngineError, saying what the template can do, where it cannot."""
        if thinking is None:
            return {}
        if thinking in EFFORTS:
            if not self.effort:
                raise EngineError(
                    f"the chat template of {name} has no effort level (no {EFFORT}): "
                    f"use --thinking on or off{'' if self.switch else ' (if it had a switch)'}",
                    setting="thinking",
                )
            return {EFFORT: thinking}
        if self.switch is not None:
            return {self.switch: thinking == "on"}
        if thinking == "on" and (self.thinks or self.effort):
            return {}  # it always thinks: on is what it does
        what = "always thinks" if self.thinks or self.effort else "does not think"
        raise EngineError(
            f"the chat template of {name} has no switch for thinking (none of "
            f"{', '.join(SWITCHES)}) and {what}: --thinking {thinking} cannot be honoured. "
            "Leave --thinking out, or give a template with a switch (--chat-template FILE)",
            setting="thinking",
        )


def served_variables(thinking: Thinking | None, template: str, name: str) -> dict[str, Any]:
    """The variables a server's chat template is sent (chat_template_kwargs): read from
    its template where the server shows it (llama-server's /props), else the usual names
    (enable_thinking; reasoning_effort for a level), which vLLM and SGLang pass to the
    template and a template without them ignores."""
    if thinking is None:
        return {}
    if template:
        return template_switches(template).variables(thinking, name)
    return {EFFORT: thinking} if thinking in EFFORTS else {SWITCHES[0]: thinking == "on"}


def template_switches(template: str) -> TemplateSwitches:
    """Read from the template's own variables (Jinja's parse), not guessed from its name."""
    import jinja2
    from jinja2 import meta
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    # the extensions the renderer has, so that what it renders parses here too
    tags: list[str | type[jinja2.ext.Extension]] = [
        Jinja2ChatFormatter.IgnoreGenerationTags,
        "jinja2.ext.loopcontrols",
    ]
    try:
        names = meta.find_undeclared_variables(jinja2.Environment(extensions=tags).parse(template))
    except jinja2.TemplateSyntaxError:
        names = set()
    switch = next((n for n in SWITCHES if n in names), None)
    return TemplateSwitches(switch, EFFORT in names, "<think>" in template)


def chat_renderer(
    info: GgufInfo, template: str | None = None, variables: Mapping[str, Any] | None = None
) -> ChatRenderer:
    """A function rendering messages with the model's own template (or `template`, a
    user's), ready for generation; `variables` are the template's own (thinking)."""
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
            return str(formatter(messages=messages, **(variables or {})).prompt)  # type: ignore[arg-type]
        except Exception as exc:  # jinja errors, raise_exception() in templates
            raise EngineError(f"the chat template of {info.path.name} failed: {exc}") from exc

    return render
