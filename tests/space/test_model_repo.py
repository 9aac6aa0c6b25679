"""The Hub model repo layout: `finetune --push-to-hub REPO` puts the PyTorch model at the
root and `export --push-to-hub REPO` puts the ONNX export in `onnx/`. A local folder laid out
exactly so must load through every way people load models, offline, and all must agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROMPT = "We propose a new method for learning sparse representations of graphs"
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def hub_layout(tmp_path_factory, tiny_model_dir, tiny_onnx_dir):
    """A model repo as the two pushes leave it: PyTorch at the root, ONNX in onnx/."""
    repo = tmp_path_factory.mktemp("hub_repo") / "neo-xscience"
    shutil.copytree(tiny_model_dir, repo)
    shutil.copytree(tiny_onnx_dir, repo / "onnx")
    return repo


@pytest.fixture(scope="module")
def reference(hub_layout):
    """Greedy token ids from transformers' generate on the root's PyTorch weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hub_layout)
    model = AutoModelForCausalLM.from_pretrained(hub_layout).eval()
    ids = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=NEW_TOKENS,
                             do_sample=False, pad_token_id=tok.eos_token_id)
    assert out.shape[1] > ids.input_ids.shape[1]
    return ids.input_ids.shape[1], out[0].tolist(), tok.eos_token_id


def test_pipeline_loads_the_root(hub_layout, reference):
    from transformers import AutoTokenizer, pipeline

    generate = pipeline("text-generation", model=str(hub_layout), device="cpu")
    text = generate(PROMPT, max_new_tokens=NEW_TOKENS, do_sample=False)[0]["generated_text"]
    tok = AutoTokenizer.from_pretrained(hub_layout)
    assert text == tok.decode(reference[1], skip_special_tokens=True)


def test_optimum_loads_the_onnx_subfolder(hub_layout, reference):
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hub_layout)
    model = ORTModelForCausalLM.from_pretrained(hub_layout, subfolder="onnx")
    ids = tok(PROMPT, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                         pad_token_id=tok.eos_token_id)
    assert out[0].tolist() == reference[1]


def test_project_engine_loads_the_repo(hub_layout, reference):
    generation = pytest.importorskip("generation")
    if not hasattr(generation, "Engine"):
        pytest.skip("generation.Engine has not landed yet")
    engine = generation.Engine.load(hub_layout, provider="cpu")
    assert engine.info["precision"] == "fp32"
    (row,) = engine.generate(PROMPT, [generation.SamplingParams()], max_new_tokens=NEW_TOKENS)
    prompt_len, ids, eos = reference
    expected = [t for t in ids[prompt_len:] if t != eos]
    assert [t for t in row.token_ids if t != eos] == expected
    assert row.finish_reason == ("eos" if eos in ids[prompt_len:] else "length")


class FolderHub:
    """A model repo kept in a local folder: `upload_folder` copies files where the Hub would
    put them (honouring `path_in_repo` and the allow/ignore patterns)."""

    def __init__(self, root: Path):
        self.root = root

    def create_repo(self, repo_id, **kwargs):
        from huggingface_hub import RepoUrl

        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, folder_path, path_in_repo=None, allow_patterns=None,
                      ignore_patterns=None, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(folder_path)
        rels = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        for rel in filter_repo_objects(rels, allow_patterns=allow_patterns,
                                       ignore_patterns=ignore_patterns):
            dest = self.root / (path_in_repo or "") / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, dest)
        return "https://huggingface.co/commit/local"


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_two_pushes_make_this_layout(tmp_path, hub_layout, tiny_model_dir, tiny_onnx_dir):
    finetune_hub = pytest.importorskip("finetune.hub", reason="finetune's push has not landed")
    export_card = pytest.importorskip("export.card", reason="export's push has not landed")
    hub = FolderHub(tmp_path / "repo")
    finetune_hub.push_to_hub(tiny_model_dir, "someone/neo-xscience", api=hub)
    export_card.push_to_hub(tiny_onnx_dir, "someone/neo-xscience", api=hub)
    assert tree(hub.root) == tree(hub_layout)
