"""Incremental detokenization that never emits half a character.

A byte-level BPE token can hold part of a UTF-8 character (an emoji spans several tokens), so
decoding token by token would show U+FFFD replacement characters. We decode a small window of
recent tokens and release text only when the window ends on a complete character; whatever is
released is final, so the concatenated stream equals the decode of all tokens.
"""

from __future__ import annotations

from tokenizers import Tokenizer

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns one row's token ids into text increments.

    The window [prefix, end) is decoded each step; text up to `read` was already released.
    Decoding from `prefix` (not from `read`) keeps the context that byte-level and
    space-handling decoders need, so the increment is exactly what a full decode would add.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self.token_ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, start: int, stop: int | None = None) -> str:
        return self._tokenizer.decode(self.token_ids[start:stop], skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        """Append one token.

        Args:
            token_id: the new token.

        Returns:
            The text that is now complete ("" while a character is still unfinished).
        """
        self.token_ids.append(token_id)
        done = self._decode(self._prefix, self._read)
        text = self._decode(self._prefix)
        if len(text) > len(done) and not text.endswith(_REPLACEMENT):
            self._prefix, self._read = self._read, len(self.token_ids)
            return text[len(done):]
        return ""

    def flush(self) -> str:
        """Release whatever is left at the end of the stream (even an unfinished character).

        Returns:
            The remaining text; afterwards the released text equals the full decode.
        """
        done = self._decode(self._prefix, self._read)
        text = self._decode(self._prefix)
        self._prefix = self._read = len(self.token_ids)
        return text[len(done):]
