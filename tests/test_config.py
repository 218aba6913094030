"""Options from YAML files: encodings, keys named as flags, errors naming the key."""

from __future__ import annotations

from pathlib import Path

from fakes import (
    FakeEngine,
    invoke,
    invoke_with,
    lines,
)


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    """Issue 13, case 10."""
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"per-category: 1\nmodel: caf\xe9.gguf\n")
    result = invoke("run", "--config", str(cfg))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{cfg} is not UTF-8 text (byte 26); save it as UTF-8 YAML" in result.output


def test_config_keys_may_be_flag_names_and_errors_name_the_key(
    model: Path, tmp_path: Path, engine: FakeEngine
) -> None:
    """Issue 13, case 12."""
    cfg = tmp_path / "run.yaml"
    out = tmp_path / "r.jsonl"
    cfg.write_text(
        f"model: {model}\nper-category: 1\ncategories: law\ndataset: mmlu-pro\n"
        f"extract: last\nout: {out}\nprogress: false\n"
    )
    result = invoke_with(engine, "run", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert lines(out)[0]["identity"]["extraction"]["mode"] == "last"
    cfg.write_text("per-category: 1\nmax-tokens: lots\n")
    result = invoke_with(engine, "run", "--config", str(cfg))
    assert (
        result.exit_code == 1
        and f"{cfg}: max-tokens: 'lots' is not a valid integer" in result.output
    )
    assert "--max-tokens" not in result.output
    cfg.write_text(f"model: {model}\nper-category: 1\nparallel: several\nout: {out}\n")
    result = invoke_with(engine, "run", "--config", str(cfg))
    assert result.exit_code == 1 and f"{cfg}: parallel" in result.output
    assert "--parallel" not in result.output


def test_a_yaml_alias_is_refused_before_it_expands(tmp_path: Path) -> None:
    """Issue 26, case 9: a 334-byte alias bomb took 3.8 GB."""
    bomb = tmp_path / "bomb.yaml"
    rows = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    rows += [
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    bomb.write_text("\n".join(rows) + "\ncategories: *i\n")
    result = invoke("run", "--config", str(bomb))
    assert result.exit_code == 1 and "uses a YAML alias" in result.output


def test_true_is_no_number_in_a_config(tmp_path: Path, model: Path) -> None:
    """Issue 26, case 12: `per-category: true` meant 1."""
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {model}\nper-category: true\n")
    result = invoke("run", "--config", str(config))
    assert result.exit_code == 1 and f"{config}: per-category: true is not a value" in result.output
