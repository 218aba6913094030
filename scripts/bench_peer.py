"""This tool against a peer on the same questions (issue 31): Ollama-MMLU-Pro's
run_openai.py (one request at a time, completion style) against a llama-server `-np 1`
built from the llama.cpp this tool embeds, and `mmlupro-local run` with its defaults,
cold (an empty prefix cache) and warm, one invocation.

    python scripts/bench_peer.py MODEL.gguf --peer DIR [--per-category 2] [--seed 7]
        [--max-tokens 512] [--server PATH]

DIR is a checkout of https://github.com/chigkim/Ollama-MMLU-Pro (run_openai.py is run
unchanged). Its Python packages (openai, toml, numpy, tqdm) are installed once into a
virtual environment in this tool's cache. Nothing is downloaded at run time: the peer is
handed the questions this tool sampled, from the embedded dataset, in place of its
`datasets.load_dataset("TIGER-Lab/MMLU-Pro")`. Prints wall time, generated tokens and
generation rate of each, and this tool's speed against the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from credentials import API_KEY  # noqa: E402
from llamaserver import llama_server  # noqa: E402  (the end-to-end tests' server, built once)

PEER_PACKAGES = ["openai", "toml", "numpy", "tqdm"]
# stands in for the `datasets` package: the rows the bench wrote, in the hub's schema
FAKE_DATASETS = """
import json, pathlib
def load_dataset(name):
    return json.loads(pathlib.Path("rows.json").read_text())
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--peer", type=Path, required=True, help="an Ollama-MMLU-Pro checkout")
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--server", type=Path, help="a llama-server binary (default: built)")
    args = parser.parse_args()
    if args.server:  # tests/llamaserver.py takes the binary from here, else builds it
        os.environ["MMLUPRO_LLAMA_SERVER"] = str(args.server)
    if not (args.peer / "run_openai.py").is_file():
        sys.exit(
            f"{args.peer} has no run_openai.py: git clone "
            "https://github.com/chigkim/Ollama-MMLU-Pro and pass its folder"
        )
    peer_python = _peer_venv()
    sample = [
        "--per-category",
        str(args.per_category),
        "--seed",
        str(args.seed),
        "--max-tokens",
        str(args.max_tokens),
        "--no-progress",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(
            f"model {args.model.name}, {args.per_category} per category (seed {args.seed}), "
            f"budget {args.max_tokens}, one invocation",
            flush=True,
        )
        runs = []
        for name in ("cold", "warm"):  # the second run finds the first one's prefix cache
            out = work / f"{name}.jsonl"
            wall = _timed(
                [
                    sys.executable,
                    "-m",
                    "mmlupro_local",
                    "run",
                    str(args.model),
                    *sample,
                    "--out",
                    str(out),
                ],
                cwd=ROOT,
                env={**os.environ, "MMLUPRO_LOCAL_CACHE": str(work / "cache")},
            )
            records = [json.loads(line) for line in out.read_text().splitlines()]
            results = [r for r in records if r["type"] == "result"]
            generated = sum(int(r["generated_tokens"]) for r in results)
            runs.append((f"mmlupro-local, defaults, {name} cache", wall, generated))
            print(f"  {runs[-1][0]}: {wall:.1f} s", flush=True)
        ids = {int(r["question_id"]) for r in results}
        wall, generated = _peer(peer_python, args, work, ids)
        runs.append(("Ollama-MMLU-Pro, llama-server -np 1", wall, generated))
        print(f"  {runs[-1][0]}: {wall:.1f} s", flush=True)
    peer_wall = runs[-1][1]
    print(f"{'':<40}{'seconds':>9}{'generated':>11}{'tokens/s':>10}{'vs peer':>9}")
    for name, wall, generated in runs:
        print(
            f"{name:<40}{wall:>9.1f}{generated:>11,}{generated / wall:>10.1f}"
            f"{peer_wall / wall:>8.2f}x"
        )


def _peer(python: Path, args: argparse.Namespace, work: Path, ids: set[int]) -> tuple[float, int]:
    from mmlupro_local.datasets.dataset import load_dataset

    data = load_dataset()
    test = [q.as_row() for q in data.test if q.question_id in ids]
    rows = {"test": test, "validation": [q.as_row() for q in data.validation]}
    peer = work / "peer"
    peer.mkdir()
    (peer / "rows.json").write_text(json.dumps(rows))
    (peer / "datasets.py").write_text(FAKE_DATASETS)
    (peer / "run_openai.py").write_text((args.peer / "run_openai.py").read_text())
    categories = sorted({row["category"] for row in test})
    with llama_server(args.model, slots=1, ctx=8192) as server:
        (peer / "config.toml").write_text(
            f'comment = ""\n[server]\nurl = "{server.url}"\napi_key = "{API_KEY}"\n'
            f'model = "bench"\ntimeout = 600.0\n[inference]\ntemperature = 0.0\ntop_p = 1.0\n'
            f"max_tokens = {args.max_tokens}\nsystem_prompt = "
            '"The following are multiple choice questions (with answers) about {subject}. '
            'Think step by step and then finish your answer with \\"the answer is (X)\\" '
            'where X is the correct letter choice."\nstyle = "no_chat"\n[test]\n'
            f"categories = {json.dumps(categories)}\nsubset = 1.0\nparallel = 1\n"
            "[log]\nverbosity = 0\nlog_prompt = false\n"
        )
        wall = _timed([str(python), "run_openai.py"], cwd=peer, env=dict(os.environ))
    report = (peer / "eval_results" / "bench" / "report.txt").read_text()
    found = re.search(r"Completion tokens: .*total (\d+)", report)
    if not found:
        sys.exit(f"the peer's report has no token count:\n{report}")
    return wall, int(found.group(1))


def _timed(command: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return wall


def _peer_venv() -> Path:
    from mmlupro_local.config import cache_dir

    venv = cache_dir() / "peer-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
        stamp.touch()
    return python


if __name__ == "__main__":
    main()
