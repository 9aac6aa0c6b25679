"""`python -m export`: a fine-tuned model directory (or Hub id) → a validated ONNX directory.

Exit codes: 0 exported and the gate passed; 1 the gate failed (every failing number is
printed, nothing is written to the output directory or pushed); 2 bad input, another export
into the same directory, or a full disk (one line on stderr).

The output directory appears whole, after the gate passed, or not at all (`export.publish`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from rundir import DirectoryLock, LockedError, disk_full, disk_full_message

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class UserError(Exception):
    """Bad input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + error
        raise UserError(f"{message} (see python -m export --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m export", description=(
        "Export a Hugging Face causal LM to ONNX (optimum, text-generation-with-past: one "
        "model.onnx with the KV cache as inputs/outputs), quantize it, and refuse the result "
        "unless the validation gate shows it is the same model."))
    p.add_argument("--model", required=True,
                   help="fine-tuned model directory (config.json, weights, tokenizer) or a Hub id")
    p.add_argument("--output-dir", required=True, type=Path, help="where the ONNX directory goes")
    p.add_argument("--quantize", nargs="+", default=[], choices=["none", "int8", "int4"],
                   help="quantized optimum file(s) to add beside the fp32 model.onnx (which "
                        "ORTModelForCausalLM loads): int8 = dynamic int8 MatMuls (model_int8.onnx), "
                        "int4 = weight-only 4-bit MatMulNBits (model_int4.onnx); default none: the "
                        "engine runs the decode graphs instead")
    p.add_argument("--decode", nargs="+", default=["int8", "int4"], choices=["none", "int8", "int4"],
                   help="quantized decode graphs (GPT-Neo) for the engine beside decode_fp32.onnx: "
                        "8-bit and 4-bit MatMulNBits weights (default both); none = fp32 only. "
                        "Each is written only if it passes the gate; decode.json lists them")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="device for the export, the PyTorch reference and the ONNX sessions")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="after the gate passes, upload the directory to the onnx/ folder of this "
                        "model repo (token from HF_TOKEN or the stored login)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow replacing a non-empty output directory: it is swapped for the new "
                        "export only after the gate passed (your own files in it are kept, an "
                        "earlier export's ONNX files, decode.json and report are not)")
    g = p.add_argument_group("validation gate (always on)")
    g.add_argument("--atol", type=float, default=1e-4,
                   help="max abs difference of fp32 ONNX logits vs PyTorch, per check")
    g.add_argument("--greedy-tokens", type=int, default=64,
                   help="length of the greedy continuation that must equal transformers generate")
    g.add_argument("--max-ppl-increase-int8", type=float, default=0.01,
                   help="fail if int8 perplexity exceeds fp32's by more than this fraction (0.01 = 1%%)")
    g.add_argument("--max-ppl-increase-int4", type=float, default=0.03,
                   help="fail if int4 perplexity exceeds fp32's by more than this fraction (0.03 = 3%%)")
    g.add_argument("--min-greedy-agreement", type=float, default=None,
                   help="fail if a quantized file's top-1 token agrees with fp32 on fewer than this "
                        "fraction of held-out positions (default: reported only)")
    g.add_argument("--eval-text", type=Path, default=None,
                   help="held-out text for prompts and perplexity: .txt (paragraphs), .jsonl or "
                        ".jsonl.gz ('abstract' or 'text' field); default: a built-in sample")
    g.add_argument("--eval-tokens", type=int, default=2048,
                   help="tokens of held-out text scored for perplexity")
    q = p.add_argument_group("quantization")
    q.add_argument("--int4-block-size", type=int, default=32,
                   help="MatMulNBits block size along K (power of two >= 16)")
    q.add_argument("--int8-block-size", type=int, default=128,
                   help="MatMulNBits block size of decode_int8.onnx (power of two >= 16; 128: "
                        "as accurate as 32 on the demo model and ~15%% less CPU a step at 125M)")
    q.add_argument("--window-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="decode graphs whose local-attention layers keep only their window in the "
                        "cache (GQA sliding_window_cache; decode.json says window_cache): less "
                        "memory, faster long contexts (default); --no-window-cache: every layer's "
                        "cache as long as the slot")
    q.add_argument("--prefill", default="int8-dynamic",
                   choices=["none", "int4-fp32", "int8-dynamic", "fp32"],
                   help="the graph the engine prefills prompts with, paired with decode_int4.onnx "
                        "(decode.json's prefill; kept only if it passes its gate): int8-dynamic = "
                        "DynamicQuantizeMatMul (default), int4-fp32 = the same 4-bit weights with "
                        "fp32 compute, fp32 = decode_fp32.onnx; none = the decode graph prefills")
    q.add_argument("--int4-embeddings", action="store_true",
                   help="also quantize the embedding tables to 4 bits in model_int4.onnx "
                        "(GatherBlockQuantized): a much smaller file, checked by the same gate")
    return p


def validate_options(args: argparse.Namespace) -> list[str]:
    """Every problem with the options (empty when they are usable)."""
    issues = []
    model = Path(args.model)
    if model.exists():
        if not (model / "config.json").is_file():
            issues.append(f"--model {args.model}: not a model directory (no config.json)")
        else:
            issues += _model_type_issues(model)
    elif not HUB_ID.match(args.model):
        issues.append(f"--model {args.model}: no such directory (and not a Hub id owner/name)")
    if "none" in args.quantize and len(args.quantize) > 1:
        issues.append("--quantize none cannot be combined with int8/int4")
    issues += output_dir_issues(args.output_dir, args.overwrite)
    for name in ("atol", "max_ppl_increase_int8", "max_ppl_increase_int4"):
        if not math.isfinite(getattr(args, name)) or getattr(args, name) < 0:
            issues.append(f"--{name.replace('_', '-')} must be a finite number >= 0")
    if args.min_greedy_agreement is not None and not 0 <= args.min_greedy_agreement <= 1:
        issues.append("--min-greedy-agreement must be in [0, 1]")  # NaN fails this too
    if args.greedy_tokens < 1 or args.eval_tokens < 16:
        issues.append("--greedy-tokens must be >= 1 and --eval-tokens >= 16")
    for name in ("int4_block_size", "int8_block_size"):
        bs = getattr(args, name)
        if bs < 16 or bs & (bs - 1):
            issues.append(f"--{name.replace('_', '-')} {bs}: must be a power of two >= 16")
    if "none" in args.decode and len(args.decode) > 1:
        issues.append("--decode none cannot be combined with int8/int4")
    if args.eval_text is not None and not args.eval_text.is_file():
        issues.append(f"--eval-text {args.eval_text}: no such file")
    if args.device == "cuda":
        import onnxruntime as ort
        import torch

        if not torch.cuda.is_available() or "CUDAExecutionProvider" not in ort.get_available_providers():
            issues.append("--device cuda: CUDA is not available to torch and onnxruntime here")
    return issues


def output_dir_issues(out: Path, overwrite: bool) -> list[str]:
    """A problem when `out` is a file, or holds something and --overwrite was not given."""
    if out.exists() and not out.is_dir():
        return [f"--output-dir {out}: is a file, not a directory"]
    if out.exists() and any(out.iterdir()) and not overwrite:
        return [f"--output-dir {out}: exists and is not empty (pass --overwrite)"]
    return []


def _model_type_issues(model_dir: Path) -> list[str]:
    """A problem when config.json's model_type is not a causal LM optimum can export with past."""
    import optimum.exporters.onnx.model_configs  # noqa: F401  (fills the TasksManager registry)
    from optimum.exporters.tasks import TasksManager

    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        return [f"--model {model_dir}: unreadable config.json ({err})"]
    model_type = str(config.get("model_type"))
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers")
    except KeyError:
        tasks = {}
    if "text-generation-with-past" not in tasks:
        return [f"--model {model_dir}: model_type {model_type!r} is not a causal language model "
                "that optimum can export with a KV cache"]
    return []


def resolve_model(model: str) -> Path:
    """A local directory as is; a Hub id downloaded with `snapshot_download`.

    Raises:
        UserError: the Hub id cannot be fetched.
    """
    path = Path(model)
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(model))
    except Exception as err:  # network, auth, missing repo: all the user's to fix
        raise UserError(f"--model {model}: cannot download from the Hub ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from err
    issues = _model_type_issues(path) if (path / "config.json").is_file() else [
        f"--model {model}: the Hub repo has no config.json at its root"]
    if issues:
        raise UserError(issues[0])
    return path


def decode_checkpoint(model_dir: Path):
    """(config, weights) for the decode graphs, or None for a model that is not GPT-Neo.

    Raises:
        UserError: an unreadable config.json or weights file (corrupted, truncated, a field
            of the wrong type, a shape that disagrees with config.json), in one line.
    """
    from export.decode.checkpoint import read_checkpoint as read

    try:
        if json.loads((model_dir / "config.json").read_text()).get("model_type") != "gpt_neo":
            print("[export] not GPT-Neo: no decode graphs, optimum's files only")
            return None
        return read(model_dir)
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"--model {model_dir}: {err}") from err


def gate_settings(args: argparse.Namespace):
    """The gate's settings from the parsed flags (reads --eval-text)."""
    from export.gate import heldout
    from export.gate.settings import GateSettings

    try:
        texts = heldout.load_texts(args.eval_text)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"--eval-text: {err}") from err
    return GateSettings(
        atol=args.atol, greedy_tokens=args.greedy_tokens, texts=texts, eval_tokens=args.eval_tokens,
        max_ppl_increase={"int8": args.max_ppl_increase_int8, "int4": args.max_ppl_increase_int4},
        min_agreement=args.min_greedy_agreement, device=args.device)


def main(argv: list[str] | None = None) -> int:
    """Run the export CLI; returns the exit code (0 ok, 1 gate failed, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
        issues = validate_options(args)
        if issues:
            raise UserError("; ".join(issues))
        try:
            with DirectoryLock(args.output_dir, what="export"):
                return _export(args)
        except LockedError as err:
            raise UserError(str(err)) from None
        except Exception as err:
            if not disk_full(err):
                raise
            raise UserError(f"{disk_full_message(args.output_dir, 'the export')}; nothing was "
                            "published there: free some space or choose another --output-dir") from err
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _export(args: argparse.Namespace) -> int:
    """The export itself, under the output directory's lock."""
    # Again under the lock: another export may have published here since the options were read.
    issues = output_dir_issues(args.output_dir, args.overwrite)
    if issues:
        raise UserError(issues[0])
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print("[export] options: " + json.dumps(options))
    model_dir = resolve_model(args.model)
    checkpoint = decode_checkpoint(model_dir)
    settings = gate_settings(args)
    from export.pipeline import ExportOptions
    from export.publish import export_staged

    result = export_staged(ExportOptions(
        model_dir=model_dir, output_dir=args.output_dir, device=args.device, settings=settings,
        precisions=[q for q in args.quantize if q != "none"],
        decode=None if checkpoint is None else [d for d in args.decode if d != "none"],
        int4_block_size=args.int4_block_size, int8_block_size=args.int8_block_size,
        int4_embeddings=args.int4_embeddings, window_cache=args.window_cache,
        prefill=None if args.prefill == "none" else args.prefill, recorded=options),
        checkpoint=checkpoint)
    for check in result.gate.checks:
        print(f"[gate] {check.line()}")
    if not result.passed:
        print(f"[export] validation gate FAILED ({len(result.gate.failures)} checks); nothing "
              f"written to {result.output_dir} and nothing pushed (report: {result.report_path}). "
              "Failing:", file=sys.stderr)
        for check in result.gate.failures:
            print(f"  {check.line()}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{p} {f['bytes'] / 1e6:.1f} MB" for p, f in result.report["files"].items())
    print(f"[export] files in {result.output_dir}: {sizes}")
    print("[export] validation gate passed")
    return _push(result.output_dir, args.push_to_hub) if args.push_to_hub else 0


def _push(output_dir: Path, repo: str) -> int:
    from export.card import push_to_hub

    try:
        url = push_to_hub(output_dir, repo)
    except Exception as err:  # network / auth: report in one line, the export stays on disk
        print(f"error: push to {repo} failed: {type(err).__name__}: "
              f"{str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
        return 2
    print(f"[export] pushed to {repo} (onnx/): {url}")
    return 0
