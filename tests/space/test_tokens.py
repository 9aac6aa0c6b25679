"""A Hugging Face token never reaches the bundle: raw, JSON-escaped in any way JSON allows,
as a decoded JSON key or value, or straddling the boundary between two scanned chunks."""

from __future__ import annotations

import json
import random
import secrets

import pytest

from space.bundle import BundleOptions, build_bundle
from space.errors import UserError
from space.tokens import holds_token
from tests.space.conftest import decode_export


def _token() -> str:
    return "hf_" + secrets.token_hex(17)


def _escape_some(text: str, rng: random.Random) -> str:
    """`text` as a JSON string body with random characters \\u-escaped (random hex case)."""
    out = []
    for ch in text:
        if rng.random() < 0.5:
            code = f"{ord(ch):04x}"
            out.append("\\u" + "".join(c.upper() if rng.random() < 0.5 else c for c in code))
        else:
            out.append("\\/" if ch == "/" else ch)
    return "".join(out)


def _model_with_tokenizer(tmp_path, text: str):
    model = decode_export(tmp_path / "export")
    (model / "tokenizer.json").write_text(text)
    return model


def _build(model, out, token=""):
    return build_bundle(BundleOptions(model=str(model), output_dir=out, embed_model=True),
                        token=token)


def test_an_escaped_token_in_a_json_note_is_refused(tmp_path):
    """The issue's probe: json.load reads it back as a real hf_ token."""
    note = '{"model": {"vocab": {}}, "note": "hf\\u005fABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh"}'
    assert json.loads(note)["note"].startswith("hf_")
    with pytest.raises(UserError, match=r"^refusing to build: model/tokenizer.json contains a "
                                        r"Hugging Face token"):
        _build(_model_with_tokenizer(tmp_path, note), tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("seed", range(6))
def test_the_stored_token_is_found_in_any_json_encoding(tmp_path, seed):
    rng = random.Random(seed)
    token = rng.choice([_token(), "user/secret-" + secrets.token_hex(4)])  # a '/' for \\/
    body = _escape_some(token, rng)
    as_key = seed % 2 == 0
    text = ('{"' + body + '": 1}') if as_key else ('{"added_tokens": ["' + body + '"]}')
    decoded = json.loads(text)
    assert token in (list(decoded) if as_key else decoded["added_tokens"])
    with pytest.raises(UserError, match="contains a Hugging Face token"):
        _build(_model_with_tokenizer(tmp_path, text), tmp_path / "b", token=token)


def test_a_json_that_does_not_parse_is_still_scanned_for_escapes(tmp_path):
    text = '{"broken": "\\u0068\\u0066\\u005F' + "A" * 34 + '", '
    with pytest.raises(UserError, match="contains a Hugging Face token"):
        _build(_model_with_tokenizer(tmp_path, text), tmp_path / "b")


def test_harmless_hf_prefixes_pass(tmp_path):
    text = json.dumps({"vocab": {"hf_": 1, "hf_short": 2, "\u0120hf": 3, "hf_a_b_c": 4}})
    _build(_model_with_tokenizer(tmp_path, text), tmp_path / "b")


@pytest.mark.parametrize("escaped", [False, True], ids=["raw", "escaped"])
def test_a_token_straddling_a_chunk_boundary_is_found(tmp_path, escaped):
    token = _token()
    encoded = (_escape_some(token, random.Random(1)) if escaped else token).encode()
    chunk = 4096
    path = tmp_path / "blob.bin"
    for start in range(chunk - len(encoded), chunk + 1, 7):
        path.write_bytes(b"\0" * start + encoded + b"\0" * (3 * chunk))
        assert holds_token(path, token, chunk_size=chunk), start
        assert holds_token(path, None, chunk_size=chunk), start  # by its hf_ shape alone
    path.write_bytes(b"x" * (3 * chunk))
    assert not holds_token(path, token, chunk_size=chunk)


def test_short_escapes_of_the_stored_token_are_found_outside_json_too(tmp_path):
    token = "user/" + secrets.token_hex(6) + '"x'
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00junk " + json.dumps(token).encode().replace(b"/", b"\\/") + b" end")
    assert b"\\/" in path.read_bytes() and b'\\"' in path.read_bytes()
    assert holds_token(path, token)
    assert not holds_token(path, token.replace("user", "resu"))
