"""Token arrays are cached on disk, keyed by data + tokenizer + settings."""

import numpy as np
from transformers import AutoTokenizer

import finetune.tokenize_cache as tc
from finetune.data import Abstract, pack_blocks
from tests.finetune.conftest import make_abstract


def _splits(n=30):
    return {"train": [Abstract(make_abstract(i)) for i in range(n)],
            "validation": [Abstract(make_abstract(100 + i)) for i in range(5)],
            "test": [Abstract(make_abstract(200 + i)) for i in range(5)]}


def test_blocks_match_the_tokenizer_and_rerun_skips_tokenization(tiny_tokenizer_dir, tmp_path,
                                                                 monkeypatch):
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    splits = _splits()
    lines = []
    blocks = tc.tokenize_splits(splits, tok, 16, tmp_path, log=lines.append)
    expected = pack_blocks([tok(a.text, add_special_tokens=False)["input_ids"]
                            for a in splits["train"]], 16, tok.eos_token_id)
    np.testing.assert_array_equal(blocks["train"], expected)
    assert (blocks["train"] == tok.eos_token_id).sum() >= 29  # one EOS per abstract but the cut

    def boom(*args, **kwargs):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(tc, "tokenize_texts", boom)
    lines.clear()
    again = tc.tokenize_splits(splits, tok, 16, tmp_path, log=lines.append)
    assert any("reusing cache" in line for line in lines)
    for name in splits:
        np.testing.assert_array_equal(again[name], blocks[name])


def test_cache_key_changes_with_data_tokenizer_and_block_size(tiny_tokenizer_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    splits = _splits()
    key = tc.cache_key(splits, tok, 16)
    assert key == tc.cache_key(_splits(), tok, 16)
    assert key != tc.cache_key(splits, tok, 32)
    assert key != tc.cache_key(_splits(29), tok, 16)
    tok.add_tokens(["<newtoken>"])
    assert key != tc.cache_key(splits, tok, 16)


def test_a_model_the_hub_cannot_give_is_one_line(tmp_path, release_dir, scratch_json,
                                                 tiny_tokenizer_dir):
    """Offline (as users set it) and not cached: exit 2 and one line, not an OSError traceback."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    for argv in (["--tokenizer", "nobody/no-tokenizer", "--from-scratch", str(scratch_json)],
                 ["--model", "nobody/no-model", "--tokenizer", str(tiny_tokenizer_dir)]):
        done = subprocess.run(
            [sys.executable, "-m", "finetune", "--data", str(release_dir), "--output-dir",
             str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--block-size", "32",
             *argv],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert len(errors) == 1 and "nobody/no-" in errors[0] and "cannot load" in errors[0]
