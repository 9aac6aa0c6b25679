"""Finding a Hugging Face token in a file: raw, or in any encoding JSON can give it.

JSON may write any character of a string as `\\uXXXX` (hex in either case, a surrogate pair
beyond the BMP) and some as short escapes (`\\/`, `\\"`, ...), so `"hf\\u005fABC..."` in a
tokenizer.json is a token to whoever `json.load`s it. The byte patterns here match every such
spelling, files are read in chunks (a 2 GiB external-data file is never held whole) with
enough overlap that a token across a chunk boundary is still seen, and a `.json` file's decoded
strings (keys and values) are checked too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CHUNK = 1 << 20
JSON_DECODE_LIMIT = 64 << 20  # larger .json files get the byte scan only (it sees escapes too)
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}
# A user access token: "hf_" + 34 letters and digits today.
TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{30,}")
_ALNUM_ESCAPE = rb"\\u00(?:3[0-9]|4[1-9a-fA-F]|5[0-9aA]|6[1-9a-fA-F]|7[0-9aA])"


def _hex(code: int) -> bytes:
    """\\uXXXX for one UTF-16 unit, each hex letter in either case."""
    return b"\\\\u" + b"".join(
        b"[" + c.lower().encode() + c.upper().encode() + b"]" if c.isalpha() else c.encode()
        for c in f"{code:04x}")


def json_char(ch: str) -> bytes:
    """A byte pattern for every way a JSON string can hold the character `ch`."""
    code = ord(ch)
    units = [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10),
                                           0xDC00 + ((code - 0x10000) & 0x3FF)]
    options = [re.escape(ch.encode("utf-8")), b"".join(_hex(u) for u in units)]
    if ch in _SHORT_ESCAPES:
        options.append(re.escape(_SHORT_ESCAPES[ch].encode()))
    return b"(?:" + b"|".join(options) + b")"


class _Finder:
    """Searches buffers for the token shape and `token` in every JSON spelling, fast.

    The full pattern (an alternation per character) runs at a few tens of MB/s, so it is only
    run near an escape: a spelling other than the raw one holds a backslash-u (or, for the
    token's own `/`, `"`... a short escape). The raw spellings have fast literal searches.
    """

    def __init__(self, token: str | None):
        shape = json_char("h") + json_char("f") + json_char("_") + (
            b"(?:[A-Za-z0-9]|" + _ALNUM_ESCAPE + b"){30}")
        parts, self.window = [shape], 33 * 6
        self.raw = token.encode() if token else None
        short = b"u"
        if token:
            parts.append(b"".join(json_char(ch) for ch in token))
            self.window = max(self.window, 12 * len(token))  # a surrogate pair is 12 bytes
            short += b"".join(re.escape(_SHORT_ESCAPES[ch][1:].encode())
                              for ch in set(token) if ch in _SHORT_ESCAPES)
        self.spelled = re.compile(b"|".join(parts))
        self.escapes = re.compile(rb"\\[" + short + rb"]")
        self.shape = re.compile(TOKEN_SHAPE.pattern.encode())

    def found(self, buffer: bytes) -> bool:
        """Whether `buffer` holds a match that lies wholly inside it."""
        if self.shape.search(buffer) or (self.raw and self.raw in buffer):
            return True
        start = end = -1
        for escape in self.escapes.finditer(buffer):
            low, high = max(0, escape.start() - self.window), escape.start() + self.window
            if low > end:  # a new run of escapes: search the previous one's neighbourhood
                if end >= 0 and self.spelled.search(buffer, start, end):
                    return True
                start = low
            end = high
        return end >= 0 and self.spelled.search(buffer, start, end) is not None


def holds_token(path: Path, token: str | None, chunk_size: int = CHUNK) -> bool:
    """Whether the file holds `token` or anything shaped like an HF token, in any JSON spelling.

    Args:
        path: the file.
        token: the user's own token (None: the shape alone).
        chunk_size: bytes read at a time (tests make it small).

    Returns:
        True when found.
    """
    finder = _Finder(token)
    if chunk_size < finder.window:
        raise ValueError(f"chunk_size {chunk_size} is below the longest match "
                         f"({finder.window} bytes)")
    zeros, tail = bytes(chunk_size), b""
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            if chunk == zeros[:len(chunk)]:
                tail = b""  # no match holds a zero byte: none crosses into this chunk
                continue
            buffer = tail + chunk
            if finder.found(buffer):
                return True
            tail = buffer[-(finder.window - 1):]  # a match ending in the next chunk starts here
    return path.suffix == ".json" and _decoded_holds(path, token)


def _decoded_holds(path: Path, token: str | None) -> bool:
    """Whether a (not too big) JSON file's decoded strings, keys included, hold a token."""
    if path.stat().st_size > JSON_DECODE_LIMIT:
        return False
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return False  # not JSON: the byte scan above saw every spelling of its text
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            todo += item
        elif isinstance(item, str) and (TOKEN_SHAPE.search(item) or (token and token in item)):
            return True
    return False
