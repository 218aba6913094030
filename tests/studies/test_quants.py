"""`quants` without a model: its rounds, its refusals, and the peak memory it reads."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import FakeEngine, invoke, reference_request, write_fake_model
from mmlupro_local.datasets.sampling import SampleSpec, draw
from mmlupro_local.run.runner import run
from mmlupro_local.studies.peak import memory_peak, peak_rss_bytes
from mmlupro_local.studies.quants import QuantsError, QuantsPlan, check_nested


@pytest.mark.parametrize(
    ("start", "most", "rounds"),
    [(5, 1400, [5, 10, 20, 40, 80, 100]), (1, 14, [1]), (10, 280, [10, 20]), (3, 14, [3])],
)
def test_the_sample_doubles_up_to_the_cap(start: int, most: int, rounds: list[int]) -> None:
    plan = QuantsPlan(models=[], out_dir=Path("."), margin=0.01, start=start, max_questions=most)
    assert plan.rounds == rounds


def test_a_model_given_twice_is_refused_before_anything_runs(tmp_path: Path) -> None:
    model = write_fake_model(tmp_path / "m.gguf")
    result = invoke("quants", str(model), str(model))
    assert result.exit_code == 2
    assert "m is given twice" in result.output and "a copy under another name" in result.output


def test_the_peak_is_the_block_s_where_the_kernel_resets_it(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "clear_refs").write_text("")
    (proc / "status").write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t1 kB\n")
    with memory_peak(proc) as peak:
        pass
    assert (proc / "clear_refs").read_text() == "5"
    assert (peak.bytes, peak.whole_process) == (200 * 2**20, False)
    with memory_peak(tmp_path / "no-proc") as whole:
        pass
    assert whole.whole_process and whole.bytes is not None and whole.bytes > 0


def test_a_reference_file_of_another_method_is_refused(tmp_path: Path) -> None:
    """Its answers would be paired with answers of another method: a difference of
    methods, not of quantizations."""
    model = write_fake_model(tmp_path / "m.gguf")
    out = tmp_path / "ref.jsonl"
    sample = SampleSpec(per_category=1, seed=0)
    run(
        reference_request(model, out=out, sample=sample),
        echo=lambda _: None,
        engine_factory=FakeEngine(),
        progress=False,
    )
    plan = QuantsPlan(models=[model], out_dir=tmp_path, margin=0.01, start=1, max_questions=14)
    check_nested(out, plan)  # the same method and sample: it predicts
    with pytest.raises(QuantsError, match="answered with --method cot; the quants are asked"):
        check_nested(out, replace(plan, method="logprob"))


@pytest.mark.parametrize(("platform", "factor"), [("darwin", 1), ("linux", 1024)])
def test_the_process_peak_is_read_in_each_system_s_unit(
    monkeypatch: pytest.MonkeyPatch, platform: str, factor: int
) -> None:
    """ru_maxrss counts bytes on macOS and KiB on Linux."""
    import resource
    from types import SimpleNamespace

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda _: SimpleNamespace(ru_maxrss=5000))
    assert peak_rss_bytes() == 5000 * factor


def test_a_look_stands_on_its_own_sample_whatever_more_the_files_hold(tmp_path: Path) -> None:
    """A rerun with a smaller plan, or after an interrupted later look, finds files holding
    more answers than the look's sample: its figures are the sample's alone."""
    from mmlupro_local.datasets.dataset import load_dataset
    from mmlupro_local.results.estimates import paired, strict
    from mmlupro_local.results.report import load_report
    from mmlupro_local.studies.quants import Look, QuantRow, _figures

    model = write_fake_model(tmp_path / "m.gguf")
    wide = SampleSpec(per_category=2, seed=0)
    files = []
    for name, letter in (("ref", "C"), ("quant", "D")):
        out = tmp_path / f"{name}.jsonl"
        engine = FakeEngine(lambda p, letter=letter: f"The answer is ({letter}).")  # type: ignore[misc]
        run(
            reference_request(model, out=out, sample=wide),
            echo=lambda _: None,
            engine_factory=engine,
            progress=False,
        )
        files.append(load_report(out))
    dataset = load_dataset()
    narrow = {q.question_id for q in draw(dataset.test, SampleSpec(per_category=1, seed=0))}
    look = Look(dataset, narrow, 2.0)
    ref_records = look.of(files[0].records)
    row = QuantRow(name="quant", path=model, reference=False, size_bytes=1, quant_type="F32",
                   bits_per_weight=None, out=tmp_path / "quant.jsonl")  # fmt: skip
    plan = QuantsPlan(models=[model], out_dir=tmp_path, margin=0.01, start=1, max_questions=14)
    _figures(row, ref_records, files[0].sizes or {}, look, plan)
    assert len(files[1].records) == 28 and row.questions == len(ref_records) == 14
    pairs = [(x, y) for x, y in zip(ref_records, look.of(files[1].records), strict=True)]
    expected = paired(pairs, files[0].sizes or {}, strict)
    assert expected is not None and row.difference is not None
    assert row.difference.value == expected.value
