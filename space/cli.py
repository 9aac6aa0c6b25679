"""`python -m space build|deploy`: the demo as a Hugging Face Space, in one command."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from space.bundle import BundleOptions, build_bundle
from space.deploy import DeployOptions, deploy
from space.errors import HubError, UserError
from space.sizes import human, installed_bytes


def _help(cls: type, name: str) -> str:
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["help"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m space",
        description="Build the demo (app.py + generation/ + the model) into a Hugging Face "
                    "Space repository, or deploy it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="write a complete Space repository folder")
    build.add_argument("--model", required=True, help=_help(BundleOptions, "model"))
    build.add_argument("--output-dir", required=True, type=Path,
                       help=_help(BundleOptions, "output_dir"))
    for flag in ("embed_model", "gpu"):
        build.add_argument(f"--{flag.replace('_', '-')}", action="store_true",
                           help=_help(BundleOptions, flag))
    build.add_argument("--title", default=BundleOptions.title, help=_help(BundleOptions, "title"))
    build.add_argument("--space-id", default=BundleOptions.space_id,
                       help=_help(BundleOptions, "space_id"))
    build.add_argument("--measure-install", action="store_true",
                       help="also pip-install requirements.txt into a temporary folder and "
                            "report its installed size (uses pip's cache and the index)")

    dep = sub.add_parser("deploy", help="build the bundle and publish it as a Space")
    dep.add_argument("--space-id", required=True, help=_help(DeployOptions, "space_id"))
    dep.add_argument("--model", required=True, help=_help(DeployOptions, "model"))
    for flag in ("embed_model", "private", "dry_run", "gpu"):
        dep.add_argument(f"--{flag.replace('_', '-')}", action="store_true",
                         help=_help(DeployOptions, flag))
    dep.add_argument("--title", default=DeployOptions.title, help=_help(DeployOptions, "title"))
    return parser


def _build(args: argparse.Namespace, command: str) -> int:
    options = BundleOptions(
        model=args.model, output_dir=args.output_dir, embed_model=args.embed_model,
        gpu=args.gpu, title=args.title, space_id=args.space_id, command=command,
    )
    print(f"space build: model={options.model} embed_model={options.embed_model} "
          f"gpu={options.gpu} output_dir={options.output_dir}")
    bundle = build_bundle(options)
    for rel, size in bundle.files:
        print(f"  {size:>12,}  {rel}")
    print(f"Bundle: {len(bundle.files)} files, {human(bundle.total_bytes)} "
          f"({bundle.total_bytes:,} bytes) in {bundle.path}")
    for line in bundle.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.measure_install:
        size = installed_bytes(bundle.path / "requirements.txt")
        print(f"Installed size of requirements.txt (pip install --target): {human(size)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `python -m space`.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        0 on success, 2 for a user error (one line on stderr), 1 when the Hub fails.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    command = "python -m space " + shlex.join(argv)
    try:
        if args.command == "build":
            return _build(args, command)
        deploy(DeployOptions(
            space_id=args.space_id, model=args.model, embed_model=args.embed_model,
            private=args.private,
            dry_run=args.dry_run, gpu=args.gpu, title=args.title, command=command,
        ))
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except HubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
