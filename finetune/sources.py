"""Read `--data` (Multi-XScience download, release files, JSON lines, text) into splits.

`load_splits` runs the whole pipeline and reports the counts of every step through `log`.
"""

from __future__ import annotations

import gzip
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from finetune import data as D
from finetune.config import MULTI_XSCIENCE
from finetune.data import Abstract, DataError

# The release files the Hub's yaolu/multi_x_science_sum script downloads.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/yaolu/Multi-XScience/master/data"
BASE_URL_ENV = "MULTI_XSCIENCE_URL"
RELEASE_NAMES = {"train": "train", "validation": "val", "test": "test"}

Log = Callable[[str], None]


def _open_text(path: Path):
    # utf-8-sig: a leading BOM (Windows tools write one) is dropped, not read as text.
    return gzip.open(path, "rt", encoding="utf-8-sig") if path.name.endswith(".gz") else open(
        path, encoding="utf-8-sig")


def read_json_list(path: Path) -> list:
    """A release file: one JSON list (optionally gzipped).

    Raises:
        DataError: the file is not JSON or not a list.
    """
    try:
        with _open_text(path) as f:
            value = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a JSON file ({err})") from err
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(value).__name__}")
    return value


def read_jsonl(path: Path) -> tuple[list, list[int]]:
    """A JSON-lines file (optionally gzipped).

    A line that is not UTF-8 or not JSON is skipped like a malformed record, so one bad
    byte costs one line, not the file.

    Returns:
        (decoded records, 1-based numbers of the non-blank lines that are not UTF-8 JSON).

    Raises:
        DataError: the file cannot be read, is one JSON array (not JSON lines), or no line is
            JSON.
    """
    records, bad = [], []
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is no part of line 1
                if not raw.strip():
                    continue
                if not records and not bad and raw.lstrip().startswith(b"["):
                    raise DataError(f"{path} is a JSON array, not JSON lines (one JSON object "
                                    "per line): write one record per line, or name a file of "
                                    "Multi-XScience release records .json")
                try:
                    records.append(json.loads(raw.decode("utf-8")))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    bad.append(number)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: not a JSON-lines file ({err})") from err
    if bad and not records:
        raise DataError(f"{path}: not a JSON-lines file (no line is JSON)")
    return records, bad


def _line_list(numbers: list[int], most: int = 10) -> str:
    """"; lines not UTF-8 JSON: 4, 41" (the first `most` of them), or "" when none."""
    if not numbers:
        return ""
    more = f" and {len(numbers) - most} more" if len(numbers) > most else ""
    return "; lines not UTF-8 JSON: " + ", ".join(map(str, numbers[:most])) + more


def read_txt(path: Path) -> list[str]:
    """A text file with one abstract per line (optionally gzipped); blank lines skipped."""
    try:
        with _open_text(path) as f:
            return [line for line in f if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a UTF-8 text file ({err})") from err


def find_release_files(directory: Path) -> dict[str, Path]:
    """The `{train,val,test}.json[.gz]` files of a release directory.

    Raises:
        DataError: naming every missing file.
    """
    found, missing = {}, []
    for split, name in RELEASE_NAMES.items():
        candidates = [directory / f"{name}.json.gz", directory / f"{name}.json"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            missing.append(f"{name}.json.gz")
        else:
            found[split] = hit
    if missing:
        raise DataError(f"{directory}: not a Multi-XScience release directory "
                        f"(missing {', '.join(missing)})")
    return found


def download_release(cache_dir: Path, log: Log = print, base_url: str | None = None) -> Path:
    """Download the three release files into `cache_dir/multi-xscience`, once.

    Args:
        cache_dir: the cache root; files already there are reused without a request.
        log: where progress lines go.
        base_url: where `{train,val,test}.json.gz` live (default: $MULTI_XSCIENCE_URL, else
            the dataset's GitHub release).

    Returns:
        The directory holding the files.

    Raises:
        DataError: a download failed.
    """
    base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    target = Path(cache_dir) / "multi-xscience"
    target.mkdir(parents=True, exist_ok=True)
    for name in RELEASE_NAMES.values():
        path = target / f"{name}.json.gz"
        if path.is_file():
            log(f"data: using cached {path}")
            continue
        url = f"{base_url}/{name}.json.gz"
        log(f"data: downloading {url}")
        part = path.with_suffix(".gz.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as err:
            part.unlink(missing_ok=True)
            raise DataError(f"could not download {url}: {getattr(err, 'reason', err)}") from err
        os.replace(part, path)  # only complete files ever carry the final name
    return target


Words = tuple[int, int | None]  # (min_words, max_words)


def _clean_and_dedupe(name: str, abstracts: list[Abstract], words: Words,
                      log: Log) -> list[Abstract]:
    kept, dropped = D.clean_all(abstracts, *words)
    unique, dups = D.dedupe(kept)
    longer = f"{dropped['long']} longer than {words[1]} words, " if words[1] is not None else ""
    log(f"data: {name}: {len(abstracts)} abstracts found; dropped {dropped['empty']} empty, "
        f"{dropped['short']} shorter than {words[0]} words, {longer}{dups['duplicate_mid']} duplicate "
        f"MAG ids, {dups['duplicate_text']} duplicate texts; {len(unique)} left")
    return unique


def _load_release(files: dict[str, Path], words: Words, log: Log) -> dict[str, list[Abstract]]:
    splits = {}
    for split, path in files.items():
        records = read_json_list(path)
        abstracts, malformed = D.extract_abstracts(records)
        log(f"data: {path.name}: {len(records)} records, {malformed} malformed skipped")
        splits[split] = _clean_and_dedupe(split, abstracts, words, log)
    splits, dropped = D.remove_overlap(splits)
    log(f"data: removed from validation {dropped['validation']} abstracts also in test; from "
        f"train {dropped['train']} also in validation or test")
    return splits


def _load_single(path: Path, text_field: str, words: Words, val_fraction: float,
                 test_fraction: float, log: Log) -> dict[str, list[Abstract]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        records, bad_lines = read_jsonl(path)
        abstracts, malformed = D.extract_texts(records, text_field)
        log(f"data: {path.name}: {len(records) + len(bad_lines)} records, "
            f"{len(bad_lines) + malformed} malformed skipped (not JSON or no string "
            f"'{text_field}')" + _line_list(bad_lines))
    elif name.endswith((".json", ".json.gz")):
        records = read_json_list(path)
        abstracts, malformed = D.extract_abstracts(records)
        log(f"data: {path.name}: {len(records)} records, {malformed} malformed skipped")
    elif name.endswith((".txt", ".txt.gz")):
        abstracts = [Abstract(line) for line in read_txt(path)]
        log(f"data: {path.name}: {len(abstracts)} lines")
    else:
        raise DataError(f"{path}: unknown data file type (expected .json, .json.gz, .jsonl, "
                        ".jsonl.gz or .txt)")
    unique = _clean_and_dedupe("all", abstracts, words, log)
    return D.split_by_hash(unique, val_fraction, test_fraction)


def load_splits(source: str, *, cache_dir: str | Path, text_field: str = "abstract",
                min_words: int = 8, max_words: int | None = None, val_fraction: float = 0.01,
                test_fraction: float = 0.01,
                max_train_samples: int | None = None, max_eval_samples: int | None = None,
                log: Log = print) -> dict[str, list[Abstract]]:
    """Load `--data` into cleaned, deduplicated, leak-free train/validation/test abstracts.

    Args:
        source: "multi-xscience", a release directory, or a data file.
        cache_dir: where the Multi-XScience download is cached.
        text_field: the text key of JSON-lines records.
        min_words: shorter abstracts are dropped.
        max_words: longer abstracts are dropped (None: no upper limit).
        val_fraction: hash share of a single file that goes to validation.
        test_fraction: hash share of a single file that goes to test.
        max_train_samples: cap on training abstracts (None: all).
        max_eval_samples: cap on validation and on test abstracts (None: all).
        log: where the counts go.

    Returns:
        {"train", "validation", "test"} → abstracts.

    Raises:
        DataError: a missing path, a file that is not JSON, or an empty split.
    """
    words = (min_words, max_words)
    if source == MULTI_XSCIENCE:
        splits = _load_release(find_release_files(download_release(Path(cache_dir), log)),
                               words, log)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            splits = _load_release(find_release_files(path), words, log)
        elif path.is_file():
            splits = _load_single(path, text_field, words, val_fraction, test_fraction, log)
        else:
            raise DataError(f"--data {source}: no such file or directory")
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    splits = {name: D.take(abstracts, limits[name]) for name, abstracts in splits.items()}
    log("data: abstracts per split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    empty = [name for name, abstracts in splits.items() if not abstracts]
    if empty:
        single_file = source != MULTI_XSCIENCE and Path(source).expanduser().is_file()
        hint = "; ".join(f"raise --{name.replace('validation', 'val')}-fraction (now {fraction})"
                         for name, fraction in (("validation", val_fraction), ("test", test_fraction))
                         if name in empty and single_file)
        raise DataError(f"--data {source}: no abstracts left for {', '.join(empty)}"
                        + (f" (few abstracts: {hint}, or give more data)" if hint else ""))
    return splits
