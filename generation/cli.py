"""`python -m generation`: continue a prompt with a model directory or Hub repo, streaming."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace

from .contract import PRECISIONS
from .engine import Engine
from .sampling.params import SamplingParams
from .sampling.pipeline import WARPERS
from .sampling.search import SEARCH, parse_early_stopping


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = _Parser(prog="python -m generation",
                description="Continue a prompt with an exported ONNX model (no torch needed).")
    p.add_argument("--model", required=True,
                   help="export directory, a directory/Hub repo with onnx/, or a Hub repo id")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="most new tokens (default: generation_config.json's, else 64)")
    for w in WARPERS:
        p.add_argument("--" + w.field.replace("_", "-"), type=w.kind, default=None, help=w.help)
    for s in SEARCH:
        kind = s.kind if isinstance(s.kind, type) else _early_stopping
        p.add_argument("--" + s.field.replace("_", "-"), type=kind, default=None,
                       metavar="{true,false,never}" if s.choices else None, help=s.help)
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed → same text)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="which graph: with decode.json, its decode_<precision>.onnx (default: "
                        "decode.json's, the fastest that passed the export's gate); without, "
                        "optimum's model[_int8|_int4].onnx (default: int8 when present, else fp32)")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                   help="execution provider (auto: CUDA only where a GPU really works)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object {"text", "token_ids", "stats"} instead of streaming')
    return p


def _early_stopping(text: str) -> bool | str:
    try:
        return parse_early_stopping(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def resolve_params(args: argparse.Namespace, defaults: SamplingParams) -> SamplingParams:
    """The model's defaults overridden by whatever was given on the command line (with
    --num-beams > 1 the model's sampling defaults are dropped: beams do not sample)."""
    given = {k: getattr(args, k) for k in [w.field for w in WARPERS + SEARCH] + ["seed"]
             if getattr(args, k) is not None}
    if (given.get("num_beams") or 1) > 1:
        defaults = SamplingParams(**{w.field: getattr(defaults, w.field) for w in SEARCH})
    return replace(defaults, **given)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI.

    Returns:
        0 on success, 2 on a user error (bad option, missing model).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Python hands undecodable argv bytes over as lone surrogates (surrogateescape).
        args.prompt.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError as err:
        parser.error(f"--prompt is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at "
                     f"position {err.start})")
    try:
        engine = Engine.load(args.model, precision=args.precision,
                             provider=None if args.provider == "auto" else args.provider)
        params = resolve_params(args, engine.default_params)
        max_new = (engine.default_max_new_tokens if args.max_new_tokens is None
                   else args.max_new_tokens)
        updates = engine.stream(args.prompt, [params], max_new)
    except ValueError as error:
        print(f"{parser.prog}: error: {'; '.join(str(error).splitlines())}", file=sys.stderr)
        return 2
    print(f"[generation] {engine.info['onnx_file']} ({engine.info['precision']}, "
          f"{engine.info['provider']}) {params} max_new_tokens={max_new}", file=sys.stderr)
    update = None
    for update in updates:
        # A beam row's text may be replaced as its best beam changes: it is printed at the end.
        if not args.json and update.deltas[0] and not params.beam:
            sys.stdout.write(update.deltas[0])
            sys.stdout.flush()
    row = update.rows[0]
    if args.json:
        stats = {**asdict(row.stats), "finish_reason": row.finish_reason,
                 "prompt_truncated": update.prompt_truncated}
        print(json.dumps({"text": row.text, "token_ids": row.token_ids, "stats": stats},
                         ensure_ascii=False))
    else:
        sys.stdout.write((row.text if params.beam else "") + "\n")
    return 0
