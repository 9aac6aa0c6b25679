"""Two CPU processes under torchrun (gloo): Trainer/DDP owns distribution, rank 0 writes."""

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.finetune.conftest import train_argv


@pytest.mark.slow
def test_torchrun_two_processes_write_one_model(release_dir, tmp_path, tiny_tokenizer_dir,
                                                scratch_json):
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun not on PATH")
    out = tmp_path / "out"
    argv = train_argv(release_dir, out, tiny_tokenizer_dir, scratch_json, tmp_path / "cache",
                      "--max-steps", "8", "--eval-steps", "4")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2",
                           "-m", "finetune", *argv], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hardware"]["processes"] == 2
    # Each optimizer step consumed one batch per process.
    assert metrics["tokens_seen"] == 8 * 2 * 4 * 32
    assert len(list(out.glob("*.safetensors"))) == 1
    # Rank 0 alone prints the config and the result lines.
    assert proc.stdout.count("finetune: resolved config") == 1
    assert proc.stdout.count("validation perplexity") == 1
