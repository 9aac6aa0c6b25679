"""`--push-to-hub REPO`: upload the model directory to the root of a Hub model repo."""

from __future__ import annotations

from pathlib import Path

# Checkpoints are for --resume on this machine, not for the Hub repo.
IGNORE = ["checkpoint-*", "checkpoint-*/**", "baseline_metrics.json", "*.part"]


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False, api=None) -> str:
    """Create `repo_id` if needed and upload `folder` to its root.

    The token is huggingface_hub's own lookup (HF_TOKEN, else the stored login); it is
    never read, printed or logged here.

    Args:
        folder: the finished model directory.
        repo_id: "owner/name" (or "name" under the token's user).
        private: create the repo private.
        api: an `HfApi` (default: a new one).

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = api or HfApi()
    repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_url.repo_id,
        repo_type="model",
        folder_path=str(folder),
        path_in_repo="",
        ignore_patterns=IGNORE,
        commit_message="Upload model trained with `python -m finetune`",
    )
    return str(getattr(commit, "commit_url", commit))
