"""The FLOPs/token formula against torch's FLOP counter, MFU peaks, and the Hub upload."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from finetune.hub import push_to_hub
from finetune.speed import flops_per_token, peak_flops


def _neo(window):
    return GPTNeoForCausalLM(GPTNeoConfig(
        vocab_size=500, hidden_size=64, num_layers=2, num_heads=4, window_size=window,
        attention_types=[[["global", "local"], 1]], max_position_embeddings=64,
        intermediate_size=256))


def test_flops_per_token_matches_torch_flop_counter():
    # With window >= block the local layer does the same work as the global one, which is
    # what transformers' implementation computes, so the formula must match the counter.
    model = _neo(window=32)
    x = torch.randint(0, 500, (2, 32))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=x, labels=x).loss.backward()
    assert flops_per_token(model, 32) * x.numel() == pytest.approx(counter.get_total_flops(), rel=0.03)


def test_local_layers_count_only_their_window():
    model = _neo(window=8)
    full = flops_per_token(_neo(window=32), 32)
    assert full - flops_per_token(model, 32) == pytest.approx(12 * 64 * (32 - 8))


def test_peak_flops():
    assert peak_flops("NVIDIA H100 80GB HBM3", True, None) == 989e12
    assert peak_flops("NVIDIA H100 PCIe", True, None) == 756e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", False, None) is None  # fp32: no table
    assert peak_flops(None, False, 2.5) == 2.5e12


class FakeApi:
    """Stands in for HfApi: the Hub cannot be reached from here."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return type("RepoUrl", (), {"repo_id": f"me/{repo_id.split('/')[-1]}"})()

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return type("Commit", (), {"commit_url": "https://hub/commit/1"})()


def test_push_uploads_the_folder_to_the_repo_root(tmp_path):
    api = FakeApi()
    url = push_to_hub(tmp_path, "me/neo", private=True, api=api)
    assert url == "https://hub/commit/1"
    (name, repo, kwargs), (_, upload) = api.calls
    assert (name, repo) == ("create_repo", "me/neo")
    assert kwargs == {"repo_type": "model", "private": True, "exist_ok": True}
    assert upload["repo_id"] == "me/neo" and upload["path_in_repo"] == ""
    assert upload["folder_path"] == str(tmp_path) and "checkpoint-*" in upload["ignore_patterns"]


def _card_inputs() -> tuple[dict, dict]:
    """metrics.json and resolved options of a fine-tuning run, as model_card takes them."""
    split = {"validation_perplexity": 20.0, "test_perplexity": 21.0}
    metrics = {"before": split, "after": split, "train_steps": 1, "tokens_seen": 10,
               "tokens_per_s": 5.0, "wall_time_s": 2.0, "data": {
                   "multi_xscience": True, "source": "multi-xscience",
                   "blocks": {"train": 1, "validation": 1, "test": 1}},
               "hardware": {"processes": 1, "device_name": "H100", "precision": "bf16"}}
    config = {"from_scratch": None, "model": "EleutherAI/gpt-neo-125m", "license": "mit",
              "block_size": 512, "learning_rate": 5e-5, "warmup_ratio": 0.05, "batch_size": 8,
              "gradient_accumulation_steps": 4}
    return metrics, config


def test_card_names_a_hub_base_model(tmp_path):
    import yaml

    from finetune.card import model_card

    metrics, config = _card_inputs()
    front = yaml.safe_load(model_card("me/neo", metrics, config).split("---")[1])
    assert front["base_model"] == "EleutherAI/gpt-neo-125m"
    assert front["model-index"][0]["name"] == "neo"
    assert front["tags"][-1] == "multi-xscience"


def test_card_shows_three_loaders_and_links_the_space():
    from finetune.card import model_card

    metrics, config = _card_inputs()
    linked = model_card("me/neo", metrics, {**config, "space_id": "me/neo-demo"})
    assert 'AutoModelForCausalLM.from_pretrained("me/neo")' in linked
    assert 'ORTModelForCausalLM.from_pretrained("me/neo", subfolder="onnx")' in linked
    assert "MODEL_ID=me/neo python app.py" in linked
    assert "https://huggingface.co/spaces/me/neo-demo" in linked
    unlinked = model_card("me/neo", metrics, config)
    assert "huggingface.co/spaces" not in unlinked
    assert "python -m space deploy --space-id USER/NAME --model me/neo" in unlinked


def test_card_names_the_tracking_logs_that_exist():
    from finetune.card import model_card

    metrics, config = _card_inputs()
    assert "TensorBoard logs: `runs/`" in model_card("me/neo", metrics, config)
    untracked = model_card("me/neo", metrics, {**config, "report_to": "none"})
    assert "TensorBoard" not in untracked and "`runs/`" not in untracked
    assert "Weights & Biases" in model_card("me/neo", metrics, {**config, "report_to": "wandb"})


def test_space_id_is_validated(tmp_path, capsys):
    from finetune.cli import main

    data = tmp_path / "a.txt"
    data.write_text("An abstract about graphs and their sparse representations.\n")
    args = ["--data", str(data), "--output-dir", str(tmp_path / "out"), "--space-id", "no slash"]
    assert main(args) == 2
    assert "--space-id 'no slash' is not a Space id" in capsys.readouterr().err
