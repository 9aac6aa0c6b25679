"""The bundled demo model: only what the app needs, within the size budget, honestly described."""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import DEMO_MODEL, demo_model_ready

pytestmark = pytest.mark.skipif(not demo_model_ready(), reason="demo_model/ is not built yet")

FILES = {"decode.json", "tokenizer.json", "config.json", "generation_config.json", "README.md"}


def _manifest() -> dict:
    return json.loads((DEMO_MODEL / "decode.json").read_text())


def test_only_the_files_the_app_needs_within_25_mib():
    files = {p.name for p in DEMO_MODEL.iterdir()}
    manifest = _manifest()
    assert list(manifest["files"]) == [manifest["default"]]  # one decode graph: the default
    assert files == FILES | set(manifest["files"].values())
    assert sum(p.stat().st_size for p in DEMO_MODEL.iterdir()) <= 25 * 2**20


def test_card_says_what_it_is():
    card = (DEMO_MODEL / "README.md").read_text()
    for needed in ("GPT-Neo", "parameters", "tokens seen", "epochs", "perplexity", "bits/byte",
                   "GPT-Neo-125M", "python -m finetune", "arXiv", "build_demo_model.py"):
        assert needed in card, needed
    from demo.ui import (
        EXAMPLES,  # the card shows greedy and top-p continuations of each of the app's examples
    )

    for prompt in EXAMPLES:
        section = card.split(f"**{prompt}**", 1)[1].split("\n- **", 1)[0]
        assert "greedy:" in section and "top-p" in section, prompt


def test_it_writes_english_words():
    from generation import Engine, SamplingParams

    engine = Engine.load(DEMO_MODEL)
    assert engine.info["precision"] == _manifest()["default"]
    text = engine.generate("In this paper, we propose", [SamplingParams()], 40)[0].text
    words = text.split()
    assert len(words) >= 10
    # A trained model writes mostly plain words; random weights give byte soup.
    assert sum(w.strip(".,;:()").isalpha() for w in words) / len(words) > 0.6, text


# Mean bits per byte of the bundled model on the first 40 test abstracts of ../shared's hash
# split, plus a little: `python scripts/bits_per_byte.py --data ../shared/data/
# arxiv-cs-abstracts.jsonl.gz --samples 40 --split test` gave this (the first model: 1.636).
MEASURED_BPB = 1.158
BPB_BOUND = MEASURED_BPB + 0.03


def test_held_out_abstracts_stay_under_the_bits_per_byte_bound(shared, tmp_path):
    """Engine.score on abstracts the model never trained on (finetune's test split)."""
    import sys

    from tests.conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from bits_per_byte import held_out, measure
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    data = shared / "data" / "arxiv-cs-abstracts.jsonl.gz"
    if not data.is_file():
        pytest.skip(f"{data} is absent")
    texts = held_out(str(data), 40, cache_dir=tmp_path)["test"]
    assert len(texts) == 40
    result = measure(DEMO_MODEL, texts)
    assert result["bits_per_byte"] <= BPB_BOUND, result
