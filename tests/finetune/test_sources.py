"""Loading each --data kind, the counts, the download path, and the user-error exits."""

import gzip
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.data import DataError
from finetune.sources import BASE_URL_ENV, load_splits
from tests.finetune.conftest import make_abstract, release_records, write_json_gz, write_release


def _load(source, tmp_path, lines=None, **kw):
    out = lines if lines is not None else []
    return load_splits(str(source), cache_dir=tmp_path / "cache", min_words=3, log=out.append, **kw)


def _keys(splits, name):
    return {a.key for a in splits[name]}, {a.mid for a in splits[name] if a.mid}


def test_release_dir_keeps_release_splits_and_prints_counts(release_dir, tmp_path):
    lines = []
    splits = _load(release_dir, tmp_path, lines)
    # 3 abstracts per record (paper + 2 cited): 40/8/8 records.
    assert {k: len(v) for k, v in splits.items()} == {"train": 120, "validation": 24, "test": 24}
    assert {a.mid for a in splits["test"]} >= {"p48", "ref48-0"}
    text = "\n".join(lines)
    assert "train.json.gz: 40 records, 0 malformed skipped" in text
    assert "abstracts per split: train 120, validation 24, test 24" in text


def test_release_dir_drops_from_train_what_val_or_test_hold(tmp_path):
    d = write_release(tmp_path / "rel", sizes=(10, 3, 3))
    train = release_records(0, 10)
    val = release_records(10, 3)
    test = release_records(13, 3)
    # A cited paper of test is also cited in train (same MAG id, different text) and a
    # validation abstract reappears in train under another id and spacing.
    train[0]["ref_abstract"]["@cite_0"] = dict(test[0]["ref_abstract"]["@cite_1"],
                                               abstract="Another cleaned version of that text.")
    train[1]["abstract"] = "  " + val[0]["abstract"].upper()
    train[1]["mid"] = "other-id"
    for name, recs in (("train", train), ("val", val), ("test", test)):
        write_json_gz(d / f"{name}.json.gz", recs)
    lines = []
    splits = _load(d, tmp_path, lines)
    train_keys, train_mids = _keys(splits, "train")
    for held in ("validation", "test"):
        keys, mids = _keys(splits, held)
        assert not train_keys & keys and not train_mids & mids
    assert not _keys(splits, "validation")[0] & _keys(splits, "test")[0]
    assert len(splits["train"]) == 30 - 2
    assert any("from train 2 also in validation or test" in line for line in lines)


def test_single_release_file_and_malformed_records(tmp_path):
    records = release_records(0, 60) + ["junk", {"abstract": None}, {"abstract": "x", "ref_abstract": 5}]
    path = write_json_gz(tmp_path / "one.json.gz", records)
    lines = []
    splits = _load(path, tmp_path, lines, val_fraction=0.2, test_fraction=0.2)
    assert sum(len(v) for v in splits.values()) == 180
    assert all(splits.values())
    assert "one.json.gz: 63 records, 3 malformed skipped" in "\n".join(lines)
    plain = tmp_path / "one.json"
    plain.write_text(json.dumps(records))
    assert _load(plain, tmp_path, val_fraction=0.2, test_fraction=0.2) == splits


def test_jsonl_with_text_field_bad_lines_and_duplicates(tmp_path):
    rows = [json.dumps({"id": i, "summary": make_abstract(i)}) for i in range(200)]
    rows += ["{not json", json.dumps({"id": 1}), json.dumps({"summary": make_abstract(3)})]
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n\n")
    lines = []
    splits = _load(path, tmp_path, lines, text_field="summary", val_fraction=0.1, test_fraction=0.1)
    text = "\n".join(lines)
    assert "203 records, 2 malformed skipped" in text
    assert "1 duplicate texts; 200 left" in text
    assert sum(len(v) for v in splits.values()) == 200
    keys = [_keys(splits, name)[0] for name in ("train", "validation", "test")]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_jsonl_lines_that_are_not_utf8_are_skipped_and_named(tmp_path):
    rows = [json.dumps({"abstract": make_abstract(i)}).encode() for i in range(60)]
    rows[3] = rows[3][:20] + b"\xff\xfe" + rows[3][20:]
    rows[40] = b"{not json"
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    lines = []
    splits = _load(path, tmp_path, lines, val_fraction=0.2, test_fraction=0.2)
    text = "\n".join(lines)
    assert "60 records, 2 malformed skipped (not JSON or no string 'abstract')" in text
    assert "lines not UTF-8 JSON: 4, 41" in text
    assert sum(len(v) for v in splits.values()) == 58


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json", ".txt"])
def test_a_utf8_bom_costs_no_record(tmp_path, suffix):
    """Windows tools start UTF-8 files with a BOM; the first record must survive it."""
    texts = [make_abstract(i) for i in range(40)]
    if suffix == ".json":
        body = json.dumps(release_records(0, 40))
    elif suffix == ".txt":
        body = "\n".join(texts) + "\n"
    else:
        body = "\n".join(json.dumps({"abstract": t}) for t in texts) + "\n"
    data = b"\xef\xbb\xbf" + body.encode()
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    plain = tmp_path / f"plain{suffix}"
    plain.write_bytes(gzip.compress(body.encode()) if suffix.endswith(".gz") else body.encode())
    splits = _load(path, tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert splits == _load(plain, tmp_path, val_fraction=0.2, test_fraction=0.2)


@pytest.mark.parametrize("indent", [None, 2], ids=["one line", "pretty-printed"])
def test_a_json_array_given_as_jsonl_is_named_so(tmp_path, indent):
    path = tmp_path / "records.jsonl"
    path.write_text("\ufeff" * (indent is None) + json.dumps(
        [{"abstract": make_abstract(i)} for i in range(40)], indent=indent) + "\n")
    with pytest.raises(DataError) as info:
        _load(path, tmp_path)
    message = str(info.value)
    assert "is a JSON array, not JSON lines" in message and "fraction" not in message
    assert "\n" not in message


def test_overlong_abstracts_are_dropped_and_counted(tmp_path):
    texts = [make_abstract(i) for i in range(40)] + ["word " * 5000]
    path = tmp_path / "a.txt"
    path.write_text("\n".join(texts) + "\n")
    lines = []
    splits = _load(path, tmp_path, lines, max_words=1000, val_fraction=0.2, test_fraction=0.2)
    assert "1 longer than 1000 words" in "\n".join(lines)
    assert sum(len(v) for v in splits.values()) == 40


def test_an_empty_held_out_split_suggests_the_fraction_option(tmp_path):
    path = tmp_path / "few.txt"
    path.write_text("\n".join(make_abstract(i) for i in range(12)) + "\n")
    with pytest.raises(DataError, match=r"no abstracts left for .*test.*raise --test-fraction "
                                        r"\(now 0.01\)"):
        _load(path, tmp_path, val_fraction=0.3, test_fraction=0.01)


def test_txt_one_abstract_per_line_with_caps(tmp_path):
    path = tmp_path / "abstracts.txt"
    path.write_text("\n".join(f"Abstract: {make_abstract(i)}" for i in range(300)) + "\nshort\n")
    lines = []
    splits = _load(path, tmp_path, lines, max_train_samples=50, max_eval_samples=5,
                   val_fraction=0.1, test_fraction=0.1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 50, "validation": 5, "test": 5}
    assert all(not a.text.startswith("Abstract") for v in splits.values() for a in v)
    assert "dropped 0 empty, 1 shorter than 3 words" in "\n".join(lines)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x1f\x8b garbage", "not a JSON file"),
    (b'{"a": 1}', "expected a JSON list of records"),
    (b"[1, 2", "not a JSON file"),
])
def test_bad_json_files_raise(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        _load(path, tmp_path)


def test_empty_result_raises(tmp_path):
    path = tmp_path / "few.jsonl"
    path.write_text(json.dumps({"abstract": "tiny"}) + "\n")
    with pytest.raises(DataError, match="no abstracts left for train, validation, test"):
        _load(path, tmp_path)


def test_incomplete_release_dir_names_missing_files(tmp_path):
    d = write_release(tmp_path / "rel")
    (d / "val.json.gz").unlink()
    with pytest.raises(DataError, match=r"missing val\.json\.gz"):
        _load(d, tmp_path)


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: p / "missing.jsonl", "no such file or directory"),
    (lambda p: (p / "x.json").write_text("not json") and p / "x.json", "not a JSON file"),
    (lambda p: (p / "x.jsonl").write_text("{}\n") and p / "x.jsonl", "no abstracts left"),
    (lambda p: (p / "x.csv").write_text("a,b\n") and p / "x.csv", "unknown data file type"),
])
def test_cli_user_errors_exit_2_with_one_clear_line(tmp_path, capsys, tiny_tokenizer_dir,
                                                    scratch_json, setup, message):
    data = setup(tmp_path)
    code = main(["--data", str(data), "--output-dir", str(tmp_path / "out"), "--tokenizer",
                 str(tiny_tokenizer_dir), "--from-scratch", str(scratch_json), "--block-size", "32",
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def release_server(tmp_path, monkeypatch):
    """A loopback HTTP server serving fixture release files at /data/."""
    root = tmp_path / "www"
    write_release(root / "data", sizes=(6, 2, 2))

    class Handler(_Handler):
        requests: list[str] = []

        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{server.server_port}/data")
    yield Handler
    server.shutdown()
    thread.join()


def test_download_then_cache_reused_without_a_request(release_server, tmp_path):
    lines = []
    first = _load("multi-xscience", tmp_path, lines)
    assert sorted(release_server.requests) == ["/data/test.json.gz", "/data/train.json.gz",
                                               "/data/val.json.gz"]
    cached = sorted(p.name for p in (tmp_path / "cache" / "multi-xscience").iterdir())
    assert cached == ["test.json.gz", "train.json.gz", "val.json.gz"]
    assert {k: len(v) for k, v in first.items()} == {"train": 18, "validation": 6, "test": 6}
    second = _load("multi-xscience", tmp_path, lines)
    assert len(release_server.requests) == 3
    assert second == first
    assert sum("using cached" in line for line in lines) == 3


def test_download_failure_is_a_data_error_and_leaves_no_file(release_server, tmp_path, monkeypatch):
    monkeypatch.setenv(BASE_URL_ENV, os.environ[BASE_URL_ENV] + "/missing")
    with pytest.raises(DataError, match="could not download .*train.json.gz"):
        _load("multi-xscience", tmp_path)
    assert not list(Path(tmp_path / "cache" / "multi-xscience").iterdir())
