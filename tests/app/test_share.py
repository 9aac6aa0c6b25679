"""Share links: the page's controls survive the round trip; hostile values never crash the page
(ignored or clamped, with a note)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from demo.share import notes_markdown, page_controls, query_string, read_query

PROMPT = "In this paper, we propose a method for\nthe & ? # = % café 😀"


def back(query: str) -> tuple:
    return read_query(dict(parse_qsl(query, keep_blank_values=True)))


def test_every_control_round_trips_through_the_link():
    controls = page_controls()
    names = [name for name, _ in controls]
    assert "seed" in names and "max_new_tokens" in names and "top_k_top_p.top_p" in names
    # Not the defaults: each control at a value of its own, within its slider.
    values = [(int if k.whole else float)(k.minimum + (k.maximum - k.minimum) * 0.37) for _, k in controls]
    assert values != [k.default for _, k in controls]
    prompt, got, notes = back(query_string(PROMPT, values))
    assert (prompt, got, notes) == (PROMPT, values, [])


def test_a_link_without_settings_gives_the_defaults():
    prompt, values, notes = read_query({})
    assert prompt is None and notes == []
    assert values == [k.default for _, k in page_controls()]


def test_out_of_range_values_are_clamped_with_a_note():
    prompt, values, notes = read_query({"prompt": "x", "max_new_tokens": "99999", "seed": "-3",
                                        "top_k_top_p.top_k": "2.6"})
    by_name = dict(zip((n for n, _ in page_controls()), values, strict=True))
    assert by_name["max_new_tokens"] == 512 and by_name["seed"] == 0 and by_name["top_k_top_p.top_k"] == 3
    assert len(notes) == 3 and all("became" in n for n in notes)
    assert isinstance(by_name["max_new_tokens"], int)


def test_hostile_values_are_ignored_with_a_note():
    query = {"prompt": " ", "sampling.temperature": "nan", "min_p": "1e999", "seed": "<script>",
             "repetition_penalty": "", "__proto__": "x" * 10_000}
    prompt, values, notes = read_query(query)
    by_name = dict(zip((n for n, _ in page_controls()), values, strict=True))
    defaults = {n: k.default for n, k in page_controls()}
    assert prompt is None
    for name in ("sampling.temperature", "min_p", "seed", "repetition_penalty"):
        assert by_name[name] == defaults[name]
    assert len(notes) == 6  # the prompt, four values, the unknown name
    assert all(len(n) < 300 for n in notes)
    assert notes_markdown(notes).startswith("**Share link:**")


def test_an_overlong_prompt_is_cut_with_a_note():
    prompt, _, notes = read_query({"prompt": "a" * 10_000})
    assert len(prompt) == 4000 and "cut" in notes[0]


def test_the_query_string_is_only_a_query():
    query = query_string("a?b#c", [k.default for _, k in page_controls()])
    parts = urlsplit("http://host/?" + query)
    assert parts.fragment == "" and dict(parse_qsl(parts.query))["prompt"] == "a?b#c"
