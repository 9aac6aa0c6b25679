"""Forks: the prompt a fork runs, and the breadcrumb that leads back."""

from __future__ import annotations

import pytest

from demo.fork import MAX_HISTORY, choices, entry, fork_label, fork_prompt, push, run_label


def test_the_fork_prompt_is_the_text_before_the_piece_and_the_candidate():
    pieces = [" a", " b", " c"]
    assert fork_prompt("P:", pieces, 0, " X") == "P: X"
    assert fork_prompt("P:", pieces, 2, " X") == "P: a b X"
    with pytest.raises(ValueError, match="no piece 3"):
        fork_prompt("P:", pieces, 3, " X")
    with pytest.raises(ValueError, match="no piece -1"):
        fork_prompt("P:", pieces, -1, " X")


def test_the_breadcrumb_keeps_the_newest_last_and_at_least_ten():
    history = []
    for i in range(MAX_HISTORY + 5):
        history = push(history, entry(run_label(f"prompt {i}"), f"prompt {i}", [i]))
    assert MAX_HISTORY >= 10 and len(history) == MAX_HISTORY
    assert history[-1]["prompt"] == f"prompt {MAX_HISTORY + 4}"  # newest last
    assert history[0]["prompt"] == "prompt 5"  # the oldest dropped first
    labels = choices(history)
    assert [i for _, i in labels] == list(range(MAX_HISTORY))
    assert len({label for label, _ in labels}) == MAX_HISTORY  # each choice its own


def test_push_does_not_change_the_session_list_it_was_given():
    history = [entry("run: a", "a", [1])]
    assert len(push(history, entry("run: b", "b", [2]))) == 2 and len(history) == 1


def test_labels_are_short():
    assert len(run_label("x" * 1000)) < 60
    assert fork_label("Greedy", 4, " the" * 100).startswith("fork: Greedy piece 5")
