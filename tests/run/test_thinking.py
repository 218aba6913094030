"""--thinking: the chat template's own switch or effort, read from its variables, set
in-process and sent to servers, part of the identity; refused where the template has no
such switch (issue 35)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fakes import FakeEngine, invoke, lines, reference_request, write_fake_model
from fakeserver import FakeServer, serve_fake
from mmlupro_local.datasets.sampling import SampleSpec
from mmlupro_local.engine import EngineError
from mmlupro_local.engine.chat import served_variables, template_switches
from mmlupro_local.results.store import StoreError
from mmlupro_local.run.runner import run
from mmlupro_local.task.prompt import PromptSettings
from mmlupro_local.task.settings import MAX_TOKENS, THINK_BUDGET

TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "templates"
SWITCH, EFFORT = TEMPLATES / "switch-thinking.jinja", TEMPLATES / "effort.jinja"
# DeepSeek-V3.1's way, and a template that always thinks with no switch
DEEPSEEK = (
    "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if thinking %}<think>{% endif %}"
)
ALWAYS = "{% for m in messages %}{{ m['content'] }}{% endfor %}<think>\n"
NEVER = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
SAMPLE = SampleSpec(per_category=1, categories=("law",))


def test_the_switch_is_read_from_the_template_s_own_variables() -> None:
    switch = template_switches(SWITCH.read_text())
    assert (switch.switch, switch.effort, switch.thinks) == ("enable_thinking", False, True)
    assert switch.variables("off", "m") == {"enable_thinking": False}
    assert switch.variables("on", "m") == {"enable_thinking": True}
    assert switch.variables(None, "m") == {}
    assert template_switches(DEEPSEEK).variables("off", "m") == {"thinking": False}
    effort = template_switches(EFFORT.read_text())
    assert effort.variables("high", "m") == {"reasoning_effort": "high"}
    assert effort.variables("on", "m") == {}  # it always thinks


@pytest.mark.parametrize(
    ("template", "thinking", "said"),
    [
        (EFFORT.read_text(), "off", "has no switch for thinking (none of enable_thinking, "
         "thinking) and always thinks: --thinking off cannot be honoured"),
        (ALWAYS, "off", "and always thinks: --thinking off cannot be honoured"),
        (NEVER, "on", "and does not think: --thinking on cannot be honoured"),
        (SWITCH.read_text(), "low", "has no effort level (no reasoning_effort): use --thinking on or off"),
    ],
)  # fmt: skip
def test_what_a_template_cannot_do_is_refused_not_pretended(
    template: str, thinking: str, said: str
) -> None:
    with pytest.raises(EngineError, match=re.escape(said)):
        template_switches(template).variables(thinking, "m.gguf")  # type: ignore[arg-type]


def test_a_server_is_sent_the_usual_names_unless_it_shows_its_template() -> None:
    assert served_variables("off", "", "s") == {"enable_thinking": False}
    assert served_variables("high", "", "s") == {"reasoning_effort": "high"}
    assert served_variables("off", DEEPSEEK, "s") == {"thinking": False}
    assert served_variables(None, "", "s") == {}


def test_prompt_prints_what_a_run_would_send(tmp_path: Path) -> None:
    model = write_fake_model(tmp_path / "m.gguf")
    base = [
        "prompt",
        "70",
        "--style",
        "chat",
        "--model",
        str(model),
        "--chat-template",
        str(SWITCH),
    ]
    off = invoke(*base, "--thinking", "off", "--json")
    on = invoke(*base, "--thinking", "on", "--json")
    default = invoke(*base, "--json")
    assert off.exit_code == on.exit_code == default.exit_code == 0, off.output
    texts = [json.loads(r.output)["prompt"] for r in (off, on, default)]
    assert texts[0].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert texts[1].endswith("<|im_start|>assistant\n<think>\n") and texts[1] == texts[2]
    refused = invoke(*base[:-1], str(EFFORT), "--thinking", "off")
    assert refused.exit_code == 1 and "cannot be honoured" in refused.output
    completion = invoke("prompt", "70", "--thinking", "off")
    assert completion.exit_code == 2 and "add --style chat" in completion.output


def test_the_mode_is_in_the_identity_and_a_file_of_one_never_resumes_as_another(
    tmp_path: Path,
) -> None:
    model = write_fake_model(tmp_path / "m.gguf")
    runs = {}
    for thinking in ("off", "on"):
        out = tmp_path / f"{thinking}.jsonl"
        engine = FakeEngine()
        request = reference_request(
            model,
            out=out,
            sample=SAMPLE,
            chat_template=SWITCH,
            prompt=PromptSettings(style="chat", thinking=thinking),  # type: ignore[arg-type]
        )
        run(request, echo=lambda _: None, engine_factory=engine, progress=False)
        header = lines(out)[0]
        runs[thinking] = (header, engine.calls[0])
    off, on = runs["off"], runs["on"]
    assert off[0]["identity"]["prompt"]["thinking"] == "off"
    assert on[0]["identity"]["prompt"]["thinking"] == "on"
    assert off[0]["model"]["chat_template_variables"] == {"enable_thinking": False}
    # off: nothing to bound, the official budget; on: the think budget on top of it
    assert off[0]["identity"]["generation"]["max_tokens"] == MAX_TOKENS
    assert on[0]["identity"]["generation"]["max_tokens"] == MAX_TOKENS + THINK_BUDGET
    assert off[1].endswith("</think>\n\n") and on[1].endswith("<think>\n")
    resumed = reference_request(
        model,
        out=tmp_path / "off.jsonl",
        sample=SAMPLE,
        chat_template=SWITCH,
        prompt=PromptSettings(style="chat", thinking="on"),
    )
    with pytest.raises(StoreError, match=re.escape('prompt.thinking: "off" in the file, "on" now')):
        run(resumed, echo=lambda _: None, engine_factory=FakeEngine(), progress=False)


def test_a_server_gets_the_mode_as_chat_template_kwargs(tmp_path: Path) -> None:
    with serve_fake(FakeServer()) as fake:
        result = invoke("run", "--server", fake.url, "--style", "chat", "--thinking", "off",
                        "--per-category", "1", "--categories", "law", "--no-progress",
                        "--out", str(tmp_path / "r.jsonl"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in fake.completions())
    # the prompts rendered to find their shared prefix (the probe's "x" aside)
    rendered = [
        b
        for path, b in fake.requests
        if path == "/apply-template" and b["messages"][0]["content"] != "x"
    ]
    assert rendered and all(
        b["chat_template_kwargs"] == {"enable_thinking": False} for b in rendered
    )
    header = lines(tmp_path / "r.jsonl")[0]
    assert header["identity"]["prompt"]["thinking"] == "off"
    assert header["model"]["chat_template_variables"] == {"enable_thinking": False}


def test_a_thinking_run_says_what_the_rest_will_cost_after_its_first_answers(
    tmp_path: Path,
) -> None:
    model = write_fake_model(tmp_path / "m.gguf")
    engine = FakeEngine(lambda prompt: "hmm hmm hmm hmm</think> The answer is (A).")
    args = ["run", str(model), "--style", "chat", "--chat-template", str(SWITCH),
            "--per-category", "2", "--categories", "law,history", "--parallel", "1",
            "--lookup", "0", "--no-progress"]  # fmt: skip
    result = invoke(*args, "--thinking", "on", "--out", str(tmp_path / "on.jsonl"), engine=engine)
    assert result.exit_code == 0, result.output
    said = re.search(
        r"thinking: (\d+) tokens per question over the first 3 answers; "
        r"the 1 left would think about (\d+) tokens",
        result.output,
    )
    assert said is not None, result.output
    records = lines(tmp_path / "on.jsonl")[1:4]
    per = sum(r["thinking_tokens"] for r in records) / 3
    assert per > 0 and said.groups() == (f"{per:,.0f}", f"{per:,.0f}")
    off = invoke(*args, "--thinking", "off", "--out", str(tmp_path / "off.jsonl"), engine=engine)
    assert off.exit_code == 0 and "tokens per question over the first" not in off.output
