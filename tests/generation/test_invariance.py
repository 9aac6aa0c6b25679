"""Batch invariance: a row's tokens never depend on the other rows of its batch.

Every row of a side-by-side batch must equal the same SamplingParams run alone, token for token
(greedy and seeded sampling), and so must every request of a batch of different prompts (rows
of different lengths, each with its own max_new_tokens) driven slot by slot through the runner,
as a serving scheduler drives it. Rows stop at a '.' or ',' as well as at EOS here (a list of
stop ids in generation_config.json), so companions finish early and leave the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generation import Engine, SamplingParams
from generation.sampling.pipeline import needs_seen, select_next
from tests.conftest import REPO_ROOT
from tests.generation.conftest import DECODE_PRECISIONS, PROMPTS
from tests.generation.sampling_helpers import seen_mask

NEW_TOKENS = 48
SIDE_BY_SIDE = 50  # (companions, seed) combinations per model and precision
MIXED = 20  # batches of different prompts per model and precision
DEMO_MODEL = REPO_ROOT / "demo_model"

# The strategies rows are drawn from; greedy ignores the seed.
POOL = (
    lambda seed: SamplingParams(),
    lambda seed: SamplingParams(temperature=1.0, seed=seed),
    lambda seed: SamplingParams(temperature=0.8, top_k=20, seed=seed + 1000),
    lambda seed: SamplingParams(temperature=1.2, top_p=0.9, seed=seed + 2000),
    lambda seed: SamplingParams(temperature=1.0, min_p=0.05, seed=seed + 3000),
    lambda seed: SamplingParams(temperature=0.7, repetition_penalty=1.3, seed=seed + 4000),
)


def with_stops(model: Path, out: Path) -> Path:
    """`model`'s files (linked) with generation_config.json stopping at EOS, '.' and ','."""
    from tokenizers import Tokenizer

    out.mkdir()
    for item in model.iterdir():
        if item.is_file() and item.name != "generation_config.json":
            (out / item.name).symlink_to(item)
    gen = json.loads((model / "generation_config.json").read_text())
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    stops = eos + [i for text in (".", ",") for i in tokenizer.encode(text).ids]
    (out / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": stops}))
    return out


def side_by_side_combos(n: int):
    """n (prompt, params) batches of 2-4 rows; every other batch has a greedy row."""
    rng = np.random.default_rng(10)
    for seed in range(n):
        size = int(rng.integers(2, 5))
        kinds = rng.choice(len(POOL), size)
        if seed % 2 == 0:
            kinds[int(rng.integers(size))] = 0
        yield PROMPTS[seed % len(PROMPTS)], [POOL[k](seed) for k in kinds]


def check_side_by_side(engine: Engine, n: int) -> None:
    solo: dict = {}
    early = greedy = 0
    for prompt, params in side_by_side_combos(n):
        rows = engine.generate(prompt, params, NEW_TOKENS)
        for p, row in zip(params, rows, strict=True):
            if (prompt, p) not in solo:
                solo[prompt, p] = engine.generate(prompt, [p], NEW_TOKENS)[0].token_ids
            assert row.token_ids == solo[prompt, p], (prompt, p, params)
        lengths = [len(r.token_ids) for r in rows]
        early += min(lengths) < max(lengths)  # a row left while another decoded on
        greedy += any(p.greedy for p in params)
    # The combinations really cover what they claim.
    assert early >= n // 5 and greedy >= n // 2, (early, greedy)


def run_mixed(engine: Engine, requests: list[tuple[list[int], SamplingParams, int]]) -> list[list[int]]:
    """Decode several prompts in one batch, as a scheduler would: each request is prefilled into
    its own slot, all running slots step together, and a finished slot is refilled by moving the
    last one into it. Returns each request's tokens."""
    runner, eos = engine.runner, set(engine.eos_ids)
    cache = runner.new_cache(len(requests), max(len(ids) + n for ids, _, n in requests))
    rngs = [np.random.default_rng(p.seed) for _, p, _ in requests]
    seen = [seen_mask([ids], engine.vocab_size)[0] if needs_seen(p) else None for ids, p, _ in requests]
    out: list[list[int]] = [[] for _ in requests]
    logits = np.stack([runner.prefill(cache, slot, ids)[-1] for slot, (ids, _, _) in enumerate(requests)])
    running = list(range(len(requests)))  # the request in each slot
    while running:
        tokens, _ = select_next(logits, [requests[r][1] for r in running], [rngs[r] for r in running],
                                [seen[r] for r in running])
        for slot, r in enumerate(running):
            out[r].append(int(tokens[slot]))
            if seen[r] is not None:
                seen[r][tokens[slot]] = True
        slot = 0
        while slot < len(running):
            r = running[slot]
            if out[r][-1] in eos or len(out[r]) == requests[r][2]:
                last = len(running) - 1
                cache.move(last, slot)
                running[slot], tokens[slot] = running[last], tokens[last]
                running.pop()
            else:
                slot += 1
        if running:
            logits = runner.step(cache, tokens[:len(running)])
    return out


def check_mixed(engine: Engine, n: int) -> None:
    rng = np.random.default_rng(20)
    prompts = [engine.encode(p) for p in PROMPTS]
    lengths = {len(ids) for ids in prompts}
    assert len(lengths) >= 3  # rows of different lengths
    for seed in range(n):
        size = int(rng.integers(2, 5))
        requests = [(prompts[int(rng.integers(len(prompts)))], POOL[int(rng.integers(len(POOL)))](seed),
                     int(rng.integers(NEW_TOKENS // 2, NEW_TOKENS + 1))) for _ in range(size)]
        batch = run_mixed(engine, requests)
        for (ids, p, max_new), tokens in zip(requests, batch, strict=True):
            solo = list(engine.stream_tokens(ids, [p], max_new))[-1].rows[0].token_ids
            assert tokens == solo, (seed, p)


# Both cache layouts: growing caches, and window caches (the local layer keeps its last 8 tokens;
# every row here goes past them).
@pytest.fixture(scope="module", params=["decode_dir", "window_dir"])
def tiny_stops(request, tmp_path_factory) -> Path:
    return with_stops(request.getfixturevalue(request.param),
                      tmp_path_factory.mktemp("stops") / request.param)


@pytest.mark.parametrize("precision", DECODE_PRECISIONS)
def test_side_by_side_rows_equal_their_solo_runs(tiny_stops, precision):
    engine = Engine.load(tiny_stops, precision=precision, provider="cpu")
    assert engine.info["graph"] == "decode" and len(engine.eos_ids) == 3
    check_side_by_side(engine, SIDE_BY_SIDE)


@pytest.mark.parametrize("precision", DECODE_PRECISIONS)
def test_different_prompts_in_one_batch_equal_their_solo_runs(tiny_stops, precision):
    check_mixed(Engine.load(tiny_stops, precision=precision, provider="cpu"), MIXED)


@pytest.mark.parametrize("kind", ["int4-fp32", "int8-dynamic", "fp32"])
def test_rows_equal_their_solo_runs_with_a_prefill_graph(tmp_path, tiny_model_dir, tiny_onnx_dir,
                                                         kind):
    from tests.generation.conftest import write_decode_dir

    tmp_path.joinpath("model").mkdir()
    model = write_decode_dir(tmp_path / "model", tiny_model_dir, tiny_onnx_dir, True, kind)
    engine = Engine.load(with_stops(model, tmp_path / "stops"), precision="int4", provider="cpu")
    assert engine.runner.prefill_session is not engine.runner.session
    check_side_by_side(engine, SIDE_BY_SIDE // 2)
    check_mixed(engine, MIXED // 2)


@pytest.fixture(scope="module")
def demo_stops(tmp_path_factory) -> Path:
    if not (DEMO_MODEL / "tokenizer.json").is_file():
        pytest.skip("demo_model/ is absent")
    return with_stops(DEMO_MODEL, tmp_path_factory.mktemp("stops") / "demo")


@pytest.mark.slow
def test_demo_model_rows_equal_their_solo_runs(demo_stops):
    engine = Engine.load(demo_stops, provider="cpu")  # its default precision
    assert engine.info["graph"] == "decode", "demo_model/ has no decode graph"
    check_side_by_side(engine, SIDE_BY_SIDE)
    check_mixed(engine, MIXED // 2)  # the tiny model covers the runner at every precision
