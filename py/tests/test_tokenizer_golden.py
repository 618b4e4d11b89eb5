"""Drift check: fair-esm and Hugging Face EsmTokenizer must still produce the token ids committed
in test/fixtures/tokenizer-golden.json (which the TypeScript tokenizer is tested against).
Regenerates the ids with dev/make-tokenizer-golden.py's logic; imports nothing from embed."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "test" / "fixtures" / "tokenizer-golden.json"
SCRIPT = REPO / "dev" / "make-tokenizer-golden.py"

pytest.importorskip("esm")
pytest.importorskip("transformers")


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_tokenizer_golden", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def regenerated() -> dict:
    return _load_generator().build()  # asserts fair-esm == HF internally


def test_alphabet_unchanged(committed: dict, regenerated: dict) -> None:
    assert regenerated["alphabet"] == committed["alphabet"]
    assert len(committed["alphabet"]) == 33
    assert committed["alphabet"][32] == "<mask>"


def test_same_inputs(committed: dict, regenerated: dict) -> None:
    assert [c["input"] for c in regenerated["cases"]] == [c["input"] for c in committed["cases"]]


def test_ids_unchanged(committed: dict, regenerated: dict) -> None:
    for new, old in zip(regenerated["cases"], committed["cases"]):
        assert new["ids"] == old["ids"], f"token ids drifted for {old['input'][:40]!r}"
