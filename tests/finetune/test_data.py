"""The pure data functions: extraction, cleaning, dedupe, splits, packing."""

import numpy as np
import pytest

from finetune.data import (
    Abstract,
    clean_abstract,
    clean_all,
    dedupe,
    extract_abstracts,
    extract_texts,
    normalize,
    pack_blocks,
    remove_overlap,
    split_by_hash,
    take,
)
from tests.finetune.conftest import make_abstract, release_records


def test_extract_takes_paper_and_cited_abstracts_with_their_ids():
    records = release_records(0, 3, refs_per_record=2)
    abstracts, malformed = extract_abstracts(records)
    assert malformed == 0
    assert len(abstracts) == 9
    assert abstracts[0] == Abstract(make_abstract(0), "p0")
    assert abstracts[1].mid == "ref0-0" and abstracts[1].text == make_abstract(10_000)


@pytest.mark.parametrize("bad", [
    "not a record",
    {"mid": "x"},                                           # no abstract
    {"mid": "x", "abstract": 3},                            # abstract not a string
    {"mid": "x", "abstract": "ok", "ref_abstract": []},     # refs not a dict
    {"mid": "x", "abstract": "ok", "ref_abstract": {"@cite_0": {"mid": "y"}}},  # ref w/o text
])
def test_malformed_records_are_skipped_and_counted(bad):
    records = release_records(0, 2) + [bad]
    abstracts, malformed = extract_abstracts(records)
    assert malformed == 1
    assert len(abstracts) == 6


def test_extract_texts_counts_records_without_the_field():
    abstracts, malformed = extract_texts([{"summary": "a b"}, {"abstract": "x y"}, [1]], "summary")
    assert [a.text for a in abstracts] == ["a b"] and malformed == 2


@pytest.mark.parametrize(("raw", "clean"), [
    ("Author(s): A. Turing, B. Liskov | Abstract: We study  graphs.", "We study graphs."),
    ("Authors: X Y | We study graphs.", "We study graphs."),
    ("Abstract: We study graphs.", "We study graphs."),
    ("ABSTRACT We study graphs.", "We study graphs."),
    ("Abstract. We study graphs.", "We study graphs."),
    ("  Summary —  We\n study\tgraphs. ", "We study graphs."),
    ("Abstract interpretation is a theory of sound approximation.",
     "Abstract interpretation is a theory of sound approximation."),
    ("We study graphs.", "We study graphs."),
    ("   \n ", ""),
    ("Abstract:", ""),
])
def test_clean_abstract(raw, clean):
    assert clean_abstract(raw) == clean


def test_clean_all_drops_empty_and_short():
    kept, counts = clean_all([Abstract("Abstract: "), Abstract("too short"),
                              Abstract("Abstract: one two three four")], min_words=4)
    assert [a.text for a in kept] == ["one two three four"]
    assert counts == {"empty": 1, "short": 1, "long": 0}


def test_clean_all_drops_the_overlong():
    kept, counts = clean_all([Abstract("word " * 5), Abstract("word " * 6), Abstract("word " * 3)],
                             min_words=4, max_words=5)
    assert [len(a.text.split()) for a in kept] == [5]
    assert counts == {"empty": 0, "short": 1, "long": 1}


def test_dedupe_by_mid_and_by_normalized_text():
    abstracts = [Abstract("We study graphs.", "m1"),
                 Abstract("A different text entirely.", "m1"),       # same MAG id
                 Abstract("we  STUDY graphs", "m2"),                 # same normalized text
                 Abstract("We study trees.", None),
                 Abstract("We study trees!", None)]                   # same normalized text
    kept, counts = dedupe(abstracts)
    assert [a.text for a in kept] == ["We study graphs.", "We study trees."]
    assert counts == {"duplicate_mid": 1, "duplicate_text": 2}
    assert normalize("We study  TREES!") == "we study trees"


def test_split_by_hash_is_deterministic_and_keyed_by_normalized_text():
    abstracts = [Abstract(make_abstract(i)) for i in range(2000)]
    splits = split_by_hash(abstracts, 0.1, 0.1)
    assert sum(len(v) for v in splits.values()) == 2000
    assert 120 < len(splits["validation"]) < 280 and 120 < len(splits["test"]) < 280
    assert split_by_hash(abstracts, 0.1, 0.1) == splits
    # A variant that normalizes the same lands in the same split.
    probe = splits["test"][0]
    variant = Abstract(probe.text.upper().replace(" ", "  "))
    assert split_by_hash([variant], 0.1, 0.1)["test"] == [variant]


def test_remove_overlap_keeps_held_out_text_out_of_train():
    shared_text, shared_mid = make_abstract(1), "m-shared"
    splits = {
        "train": [Abstract(shared_text.lower()), Abstract("train only text", shared_mid),
                  Abstract("train keeps this", "m-train")],
        "validation": [Abstract("val text", shared_mid), Abstract(make_abstract(2))],
        "test": [Abstract(shared_text, "m-test"), Abstract(make_abstract(2).upper())],
    }
    out, dropped = remove_overlap(splits)
    assert [a.text for a in out["train"]] == ["train keeps this"]
    assert [a.text for a in out["validation"]] == ["val text"]
    assert out["test"] == splits["test"]
    assert dropped == {"validation": 1, "train": 2}


def test_take_is_a_stable_subset_in_input_order():
    abstracts = [Abstract(make_abstract(i)) for i in range(50)]
    sub = take(abstracts, 10)
    assert len(sub) == 10 and sub == take(abstracts, 10)
    positions = [abstracts.index(a) for a in sub]
    assert positions == sorted(positions)
    assert take(abstracts, None) == abstracts and take(abstracts, 99) == abstracts


def test_pack_blocks_boundaries_eos_and_only_the_remainder_lost():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
    blocks = pack_blocks(docs, block_size=4, eos_id=0)
    stream = [1, 2, 3, 0, 4, 5, 0, 6, 7, 8, 9, 0, 10, 0]   # 14 tokens → 3 blocks, 2 lost
    assert blocks.dtype == np.int32 and blocks.shape == (3, 4)
    assert blocks.ravel().tolist() == stream[:12]
    assert blocks[0].tolist() == [1, 2, 3, 0] and blocks[1].tolist() == [4, 5, 0, 6]
    # Every document's EOS sits right after its last token.
    flat = blocks.ravel().tolist()
    assert [i for i, t in enumerate(flat) if t == 0] == [3, 6, 11]


def test_pack_blocks_exact_fit_and_too_little():
    assert pack_blocks([[1, 2, 3]], block_size=4, eos_id=9).tolist() == [[1, 2, 3, 9]]
    assert pack_blocks([[1, 2]], block_size=4, eos_id=9).shape == (0, 4)
    assert pack_blocks([], block_size=4, eos_id=9).shape == (0, 4)
