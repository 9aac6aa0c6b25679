"""Deploy the bundle to a Hugging Face Space: create it, upload the bundle, set MODEL_ID.

The token comes from `HF_TOKEN` or the stored login (`huggingface_hub.get_token()`), goes
only to the Hub client, and is never printed, logged or written: every printed line is
scrubbed of it, and a bundle that contains it is refused before any upload.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from space.bundle import Bundle, BundleOptions, build_bundle, is_local_model, repo_id_problem
from space.card import DEFAULT_TITLE
from space.errors import HubError, UserError
from space.sizes import human

HubFactory = Callable[[str], Any]
"""Makes a Hub client (an `HfApi` or a test's fake) from a token."""


@dataclass
class DeployOptions:
    """What to deploy; each field is a `python -m space deploy` option."""

    space_id: str = field(metadata={"help": "the Space, USER/NAME (created if absent)"})
    model: str = field(metadata={"help": "Hub model id the Space serves (set as MODEL_ID), or "
                                         "a local model dir with --embed-model"})
    embed_model: bool = field(default=False, metadata={
        "help": "upload the local --model's engine files with the app (no Hub model repo needed)"})
    private: bool = field(default=False, metadata={"help": "create the Space private"})
    dry_run: bool = field(default=False, metadata={
        "help": "print every file and size that would be uploaded, and where; upload nothing"})
    gpu: bool = field(default=False, metadata={"help": "onnxruntime-gpu build of the bundle"})
    title: str = field(default=DEFAULT_TITLE, metadata={"help": "the Space's display title"})
    command: str = field(default="", metadata={"help": "command line recorded in the README"})


def default_hub_factory(token: str) -> Any:
    """The real client: `huggingface_hub.HfApi` authenticated with `token`."""
    from huggingface_hub import HfApi

    return HfApi(token=token)


def stored_token() -> str | None:
    """`HF_TOKEN`, else the token saved by `huggingface-cli login`, else None."""
    from huggingface_hub import get_token

    return get_token()


def space_url(space_id: str) -> str:
    """The Space's page on the Hub."""
    return f"https://huggingface.co/spaces/{space_id}"


def validate(options: DeployOptions) -> None:
    """Check every option at once; raise one UserError listing every problem."""
    issues = []
    if problem := repo_id_problem(options.space_id, need_namespace=True):
        issues.append(f"--space-id: {problem}")
    if is_local_model(options.model) and not options.embed_model:
        issues.append(f"--model {options.model} is a local directory: add --embed-model to "
                      "upload it with the app, or push it first (python -m export "
                      "--push-to-hub REPO) and pass that Hub id")
    elif options.embed_model and not is_local_model(options.model):
        issues.append(f"--embed-model needs a local model directory; {options.model!r} is not one")
    elif not options.embed_model and (
        problem := repo_id_problem(options.model, need_namespace=False)
    ):
        issues.append(f"--model: {problem}")
    if issues:
        raise UserError("; ".join(issues))


def deploy(
    options: DeployOptions,
    *,
    hub_factory: HubFactory | None = None,
    token_getter: Callable[[], str | None] | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """Build the bundle into a temporary folder and publish it as the Space.

    Args:
        options: what to deploy.
        hub_factory: makes the Hub client from the token (default `default_hub_factory`;
            tests pass a recording fake).
        token_getter: where the token comes from (default `stored_token`).
        echo: where progress lines go (each scrubbed of the token).

    Returns:
        The Space's URL (also for a dry run, where nothing is uploaded).

    Raises:
        UserError: bad options, no token for a real deploy, or a bundle file holding a token.
        HubError: a Hub call failed.
    """
    validate(options)
    # Looked up at call time, so a test can swap the module's defaults.
    hub_factory = hub_factory or default_hub_factory
    token = (token_getter or stored_token)()
    if not options.dry_run and not token:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `huggingface-cli login` "
                        "(a write token)")
    say = _scrubbed(echo, token)
    with tempfile.TemporaryDirectory(prefix="space-bundle-") as tmp:
        bundle = build_bundle(BundleOptions(
            model=options.model, output_dir=Path(tmp) / "bundle", gpu=options.gpu,
            embed_model=options.embed_model, title=options.title, space_id=options.space_id,
            command=options.command or _command(options),
        ), token=token or "")  # build refuses any file that holds the token
        _describe(bundle, options, say)
        if options.dry_run:
            say("Dry run: nothing was uploaded.")
            return space_url(options.space_id)
        url = _publish(bundle, options, hub_factory(token), token)
    say(f"Deployed: {url}")
    return url


def _publish(bundle: Bundle, options: DeployOptions, api: Any, token: str) -> str:
    steps = [
        ("create_repo", lambda: api.create_repo(
            options.space_id, repo_type="space", space_sdk="gradio",
            private=options.private, exist_ok=True)),
        # delete_patterns="*": files of an earlier deploy that the bundle no longer has go
        # (the Hub keeps .gitattributes), so the Space holds exactly the bundle.
        ("upload_folder", lambda: api.upload_folder(
            repo_id=options.space_id, repo_type="space", folder_path=str(bundle.path),
            commit_message=f"Deploy the demo serving {_model_name(options)}",
            delete_patterns="*")),
        ("add_space_variable", lambda: api.add_space_variable(
            options.space_id, "MODEL_ID", options.model)),
    ]
    if options.embed_model:
        # The bundle's app.py serves model/ unless MODEL_ID is set: drop an earlier deploy's.
        steps[-1] = ("remove MODEL_ID", lambda: _drop_model_variable(api, options.space_id))
    url = None
    for name, call in steps:
        try:
            result = call()
        except Exception as err:  # the Hub's failures have many types; report them all alike
            message = str(err).replace(token, "***").splitlines()
            raise HubError(f"deploy to {options.space_id} failed at {name}: "
                           f"{type(err).__name__}: {message[0] if message else ''}") from None
        if name == "create_repo":
            url = str(result) if result else None
    return url or space_url(options.space_id)


def _drop_model_variable(api: Any, space_id: str) -> None:
    if "MODEL_ID" in (api.get_space_variables(space_id) or {}):
        api.delete_space_variable(space_id, "MODEL_ID")


def _describe(bundle: Bundle, options: DeployOptions, say: Callable[[str], None]) -> None:
    verb = "Would upload" if options.dry_run else "Uploading"
    visibility = "private" if options.private else "public"
    say(f"Space: {space_url(options.space_id)} (sdk gradio, {visibility}, created if absent)")
    say(f"{verb} {len(bundle.files)} files, {human(bundle.total_bytes)} "
        "(any other file in the Space is deleted):")
    for rel, size in bundle.files:
        say(f"  {size:>12,}  {rel}")
    for line in bundle.warnings:
        say(f"warning: {line}")
    say("Model: embedded in model/ (no MODEL_ID variable)" if options.embed_model
        else f"Space variable: MODEL_ID={options.model}")


def _model_name(options: DeployOptions) -> str:
    """The Hub id, or an embedded model's folder name (the local path stays private)."""
    return Path(options.model).name if options.embed_model else options.model


def _scrubbed(echo: Callable[[str], None], token: str | None) -> Callable[[str], None]:
    if not token:
        return echo
    return lambda line: echo(line.replace(token, "***"))


def _command(options: DeployOptions) -> str:
    flags = (["--private"] * options.private + ["--gpu"] * options.gpu
             + ["--embed-model"] * options.embed_model)
    return " ".join(["python -m space deploy --space-id", options.space_id,
                     "--model", options.model, *flags])
