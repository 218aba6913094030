"""The item-response model shipped with the embedded dataset: for each test question a
two-parameter logistic item, P(correct) = sigmoid(a * ability + c), fitted on 20 released
official runs (scripts/fit_items.py). The assisted estimate of a full score uses it; a
dataset whose questions differ gets none (its estimate is then post-stratified only).

The file is a magic, a JSON header (the dataset's sha256, the runs fitted on) and the
a and c of every test question as half floats, in question-id order: 48 KB."""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmlupro_local.datasets.dataset import EMBEDDED_NAME, Dataset
from mmlupro_local.errors import DatasetError

MAGIC = b"MPIT"
ITEMS_FILE = "items.bin"


@dataclass(frozen=True)
class ItemModel:
    dataset_sha256: str
    a: tuple[float, ...]  # discrimination of each test question, in question-id order
    c: tuple[float, ...]  # its intercept
    runs: tuple[str, ...]  # the runs it was fitted on

    def by_question(self, dataset: Dataset) -> dict[int, tuple[float, float]]:
        ids = sorted(q.question_id for q in dataset.test)
        return {qid: (a, c) for qid, a, c in zip(ids, self.a, self.c, strict=True)}


def write_items(path: Path, model: ItemModel) -> None:
    header = json.dumps(
        {
            "dataset_sha256": model.dataset_sha256,
            "runs": list(model.runs),
            "items": len(model.a),
            "model": "2PL: sigmoid(a * ability + c)",
        }
    ).encode()
    body = struct.pack(f"<{len(model.a)}e{len(model.c)}e", *model.a, *model.c)
    path.write_bytes(MAGIC + struct.pack("<I", len(header)) + header + body)


def read_items(data: bytes) -> ItemModel:
    if data[:4] != MAGIC:
        raise DatasetError("the item model file is damaged; reinstall mmlupro-local")
    (size,) = struct.unpack_from("<I", data, 4)
    header = json.loads(data[8 : 8 + size])
    n = int(header["items"])
    values = struct.unpack_from(f"<{2 * n}e", data, 8 + size)
    return ItemModel(str(header["dataset_sha256"]), values[:n], values[n:], tuple(header["runs"]))


@functools.cache
def _shipped() -> ItemModel | None:
    source = resources.files("mmlupro_local") / "data" / EMBEDDED_NAME / ITEMS_FILE
    try:
        return read_items(source.read_bytes())
    except FileNotFoundError:
        return None


def item_model(dataset: Dataset) -> ItemModel | None:
    """The shipped item model, when it was fitted on this very dataset's questions."""
    model = _shipped()
    return model if model is not None and model.dataset_sha256 == dataset.sha256 else None
