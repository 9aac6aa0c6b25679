"""The caller's side of a beam row: its running beams rebuilt from (parent, token) pairs.

The loop sends, per step, each new running beam's parent, token and raw probability; this
builder rebuilds the beams (best first), shows the best one's text, and when the search is done
takes the finished hypotheses from the last update. The best running beam can change from one
step to the next, so its text does not only grow: `settle` says when it was replaced.
"""

from __future__ import annotations

from .detok import IncrementalDetokenizer
from .request import RowUpdate
from .sampling.params import Hypothesis, RowResult, RowStats

_REPLACEMENT = "\ufffd"


class BeamRowBuilder:
    """One beam row's result, built from its updates (the interface of handle.RowBuilder).

    Args:
        params: the row's sampling settings (num_beams > 1).
        tokenizer: the `tokenizers.Tokenizer` that decodes it.
        prompt_tokens: prompt tokens fed to the model (after truncation).
    """

    def __init__(self, params, tokenizer, prompt_tokens: int):
        self.params = params
        self.tokenizer = tokenizer
        self.result = RowResult(stats=RowStats(prompt_tokens=prompt_tokens))
        self.beams: list[tuple[list[int], list[float]]] = [([], [])] * params.num_beams
        self._shown = ""  # the text the caller was last told about

    def apply(self, update: RowUpdate) -> str:
        """Record one step of the search (the text is refreshed by `settle`).

        Returns:
            "" (a beam row's text changes in `settle`).
        """
        parents, tokens, probs = update.beam
        self.beams = [(self.beams[p][0] + [t], self.beams[p][1] + [q])
                      for p, t, q in zip(parents, tokens, probs, strict=True)]
        row = self.result
        row.stats.record(update.t)
        if update.hypotheses is not None:
            row.hypotheses = [Hypothesis(self._decode(ids), tuple(ids), score)
                              for ids, score, _, _ in update.hypotheses]
            ids, _, token_probs, cands = update.hypotheses[0]
            self.beams = [(list(ids), list(token_probs))]
            row.candidates = list(cands) if cands is not None else []
            row.finished, row.finish_reason = True, update.finish_reason
        return ""

    def settle(self) -> tuple[str, bool]:
        """Show the best beam (the best hypothesis once finished): what changed since the last
        call.

        Returns:
            (delta, replaced): the text added, or with replaced=True the whole new text (the
            best beam changed to one that does not extend what was shown).
        """
        self._show(*self.beams[0])
        text, shown = self.result.text, self._shown
        self._shown = text
        if text.startswith(shown):
            return text[len(shown):], False
        return text, True

    def _show(self, token_ids: list[int], probs: list[float]) -> None:
        """Make the row show these tokens: text, token_ids, pieces."""
        row = self.result
        detok = IncrementalDetokenizer(self.tokenizer)
        pieces = []
        for token, prob in zip(token_ids, probs, strict=True):
            piece = detok.add(token)
            if piece:
                pieces.append((piece, prob))
        rest = detok.flush()
        if rest and (row.hypotheses or not rest.endswith(_REPLACEMENT)):
            pieces.append((rest, probs[-1]))  # the end of the text, or a character completed at the end
        row.token_ids = token_ids
        row.pieces = pieces
        row.text = "".join(p for p, _ in pieces)

    def _decode(self, token_ids) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)
