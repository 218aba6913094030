"""Models by hub reference (hf://, --hf-repo/--hf-file, `model fetch`) through the real
CLI and huggingface_hub, against a hub on 127.0.0.1; and the memory estimate."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import (
    gguf_bytes,
    invoke,
    write_fake_model,
)
from hubserver import HubRepo, hub_env, run_cli, serve

REPO = "someone/Tiny-GGUF"
COMMIT = "c" * 40


@pytest.fixture
def repo(tmp_path: Path) -> HubRepo:
    files = tmp_path / "files"
    files.mkdir()
    made = {
        name: write_fake_model(files / name.replace("/", "_"), data_bytes=64 + i * 32)
        for i, name in enumerate(
            [
                "tiny-Q4_K_M.gguf",
                "tiny-Q8_0.gguf",
                "split/big-00001-of-00002.gguf",
                "split/big-00002-of-00002.gguf",
            ]
        )
    }
    (files / "README.md").write_text("# tiny\n")
    made["README.md"] = files / "README.md"
    hub_repo = HubRepo("models", REPO)
    hub_repo.add(COMMIT, made, "main")
    return hub_repo


def fetch(ref: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("model", "fetch", ref, env=env)


def test_exact_file_downloads_once_then_works_offline(repo: HubRepo, tmp_path: Path) -> None:
    with serve(repo) as hub:
        env = hub_env(hub.url, tmp_path)
        done = fetch(f"hf://{REPO}/tiny-Q8_0.gguf", env)
        assert done.returncode == 0, done.stderr
        path = Path(done.stdout.strip())
        assert path.read_bytes() == repo.revisions[COMMIT]["tiny-Q8_0.gguf"].read_bytes()
        assert str(tmp_path / "hf") in str(path)  # huggingface_hub's own cache
        asked = len(hub.requests)
        again = fetch(f"hf://{REPO}/tiny-Q8_0.gguf", {**env, "HF_HUB_OFFLINE": "1"})
        assert again.returncode == 0, again.stderr
        assert Path(again.stdout.strip()) == path
        assert len(hub.requests) == asked  # offline: not one request


def test_pattern_is_case_insensitive_and_works_from_the_cache(
    repo: HubRepo, tmp_path: Path
) -> None:
    with serve(repo) as hub:
        env = hub_env(hub.url, tmp_path)
        done = fetch(f"hf://{REPO}/*q4_k_m.gguf", env)
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()).name == "tiny-Q4_K_M.gguf"
    # the hub is gone now: offline mode and an unreachable endpoint both use the cache
    for extra in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}):
        cached = fetch(f"hf://{REPO}/*Q4_K_M.gguf", {**env, **extra})
        assert cached.returncode == 0, cached.stderr
        assert Path(cached.stdout.strip()).name == "tiny-Q4_K_M.gguf"


def test_ambiguous_and_unmatched_patterns_say_what_is_there(repo: HubRepo, tmp_path: Path) -> None:
    with serve(repo) as hub:
        env = hub_env(hub.url, tmp_path)
        many = fetch(f"hf://{REPO}/tiny-*.gguf", env)
        none = fetch(f"hf://{REPO}/*Q6_K.gguf", env)
    assert many.returncode == 1
    assert "2 files in someone/Tiny-GGUF match" in many.stderr and "narrower" in many.stderr
    assert none.returncode == 1
    assert "no file in someone/Tiny-GGUF matches '*Q6_K.gguf'" in none.stderr
    assert "tiny-Q4_K_M.gguf" in none.stderr
    assert "Traceback" not in many.stderr + none.stderr


def test_split_model_downloads_every_part(repo: HubRepo, tmp_path: Path) -> None:
    with serve(repo) as hub:
        done = fetch(f"hf://{REPO}/split/big-*.gguf", hub_env(hub.url, tmp_path))
    assert done.returncode == 0, done.stderr
    first = Path(done.stdout.strip())
    assert first.name == "big-00001-of-00002.gguf"
    assert (first.parent / "big-00002-of-00002.gguf").exists()


@pytest.mark.parametrize(
    ("ref", "extra", "message"),
    [
        (f"hf://{REPO}/tiny-Q8_0.gguf", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        (f"hf://{REPO}/*Q8_0.gguf", {"HF_HUB_OFFLINE": "1"}, "not in the local Hugging Face cache"),
        (f"hf://{REPO}/tiny-Q8_0.gguf", {"HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot be reached"),
        (
            "hf://someone/Missing-GGUF/m.gguf",
            {},
            "repository not found on the hub (or it is private: set HF_TOKEN)",
        ),
        (f"hf://{REPO}/nothing.gguf", {}, "no such file in the repository"),
        (f"hf://{REPO}", {}, "is not a hub reference; write hf://OWNER/REPO/FILE.gguf"),
    ],
)
def test_hub_failures_are_one_clear_line(
    repo: HubRepo, tmp_path: Path, ref: str, extra: dict[str, str], message: str
) -> None:
    with serve(repo) as hub:
        done = fetch(ref, hub_env(hub.url, tmp_path, **extra))
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
    if "cache" in message or "reached" in message:
        assert "pass the .gguf file's local path" in done.stderr
    assert "Traceback" not in done.stderr


def test_hf_repo_without_hf_file_is_refused(tmp_path: Path) -> None:
    done = run_cli("run", "--hf-repo", REPO, "--per-category", "1", env={})
    assert done.returncode == 1
    assert "--hf-repo and --hf-file go together" in done.stderr


@pytest.mark.e2e
def test_run_by_hub_reference_records_its_source(smollm2: Path, tmp_path: Path) -> None:
    real = HubRepo("models", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    real.add(COMMIT, {"SmolLM2-135M-Instruct.Q4_1.gguf": smollm2}, "main")
    out = tmp_path / "hub.jsonl"
    with serve(real) as hub:
        done = run_cli("run", "--hf-repo", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                       "--hf-file", "*q4_1.gguf", "--per-category", "1", "--categories", "math",
                       "--shots", "1", "--max-tokens", "8", "--no-progress", "--out", str(out),
                       env=hub_env(hub.url, tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    header = json.loads(out.read_text().splitlines()[0])
    model = header["model"]
    assert model["source"] == "hf://HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/*q4_1.gguf"
    assert model["sha256"] == hashlib.sha256(smollm2.read_bytes()).hexdigest()
    assert str(tmp_path / "hf") in model["path"]


def huge_model(path: Path) -> Path:
    """A valid GGUF header declaring a 70B-class llama: 80 layers, 8,192 wide, no GQA."""
    meta = {
        "general.architecture": "llama",
        "llama.block_count": 80,
        "llama.embedding_length": 8192,
        "llama.attention.head_count": 64,
        "llama.context_length": 131072,
    }
    path.write_bytes(gguf_bytes(meta))
    return path


def test_a_model_too_large_for_memory_is_refused_before_loading(tmp_path: Path) -> None:
    model = huge_model(tmp_path / "huge.gguf")
    out = tmp_path / "r.jsonl"
    done = run_cli("run", str(model), "--per-category", "1", "--ctx", "131072", "--parallel", "1",
                   "--out", str(out), env={"MMLUPRO_LOCAL_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert done.returncode == 1
    # what one question reaches and a call's padding (engine.shapes), one stream at --parallel 1
    assert "huge.gguf needs about" in done.stderr
    assert "KV cache 320.6 GiB for 131,328 tokens" in done.stderr
    assert "of memory; use a smaller quantization" in done.stderr
    assert "Traceback" not in done.stderr
    info = run_cli("model", "info", str(model), "--ctx", "131072", env={})
    assert info.returncode == 0, info.stderr
    assert "does NOT fit" in info.stdout


def test_an_unreadable_model_is_one_clear_line(tmp_path: Path) -> None:
    model = write_fake_model(tmp_path / "locked.gguf")
    model.chmod(0)
    command = [sys.executable, "-m", "mmlupro_local", "run", str(model), "--per-category", "1",
               "--out", str(tmp_path / "r.jsonl")]  # fmt: skip
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root, this test needs setpriv (util-linux)"
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "locked.gguf: permission denied; make the file readable" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_hub_references_with_one_slash_and_no_network(tmp_path: Path) -> None:
    """Issue 13, case 17."""
    result = invoke("run", "hf:/owner/repo/x.gguf", "--per-category", "1")
    assert result.exit_code == 1
    assert "did you mean hf://owner/repo/x.gguf?" in result.output
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    done = run_cli(
        "model",
        "fetch",
        "hf://owner/repo/x.gguf",
        env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")},
    )
    assert time.monotonic() - began < 10
    assert done.returncode == 1 and "Retry" not in done.stderr
    assert f"the hub cannot be reached (127.0.0.1:{port}: Connection refused" in done.stderr
