"""What the export leaves behind for people: `export_report.json`, the model card's export
section, and the upload to the Hub's `onnx/` folder."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from export.optimum.quantize import QUANTIZED_OPS, count_ops

PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime-gpu",
            "onnxruntime", "numpy")
CARD_MARK = "## ONNX export"


def versions() -> dict[str, str]:
    """Installed versions of the packages the export depends on (absent ones skipped)."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def build_report(model_dir: Path, files: dict[str, Path], quantizers: dict, gate,
                 timings: dict[str, float], options: dict) -> dict:
    """Everything measured during an export, as a JSON-ready dict."""
    file_info = {}
    for precision, path in files.items():
        ops = count_ops(path)
        file_info[precision] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "quantized_ops": {op: ops[op] for op in QUANTIZED_OPS if ops[op]},
            "matmul_ops": ops["MatMul"],
        }
    return {
        "model": str(model_dir),
        "options": options,
        "files": file_info,
        "quantization": quantizers,
        "gate": None if gate is None else {
            "passed": gate.passed,
            "seconds": round(gate.seconds, 3),
            "checks": [c.to_dict() for c in gate.checks],
            "quality": gate.quality,
        },
        "timings_s": timings,
        "versions": versions(),
    }


def export_section(report: dict) -> str:
    """The model card's export section: files, gate results, how to load."""
    lines = [CARD_MARK, "",
             "ONNX files made with this project's `python -m export` (optimum, task "
             "`text-generation-with-past`: one graph with the KV cache as inputs/outputs).", "",
             "| precision | file | size (MB) | quantized ops |", "| --- | --- | --- | --- |"]
    for precision, info in report["files"].items():
        ops = ", ".join(f"{k} ×{v}" for k, v in info["quantized_ops"].items()) or "—"
        lines.append(f"| {precision} | `{info['file']}` | {info['bytes'] / 1e6:.1f} | {ops} |")
    gate = report["gate"]
    if gate is None:
        lines += ["", "Validation gate: **skipped**."]
    else:
        verdict = "passed" if gate["passed"] else "FAILED"
        lines += ["", f"Validation gate ({verdict}, {gate['seconds']:.1f} s):", "",
                  "| check | value | limit | result |", "| --- | --- | --- | --- |"]
        for c in gate["checks"]:
            limit = "—" if c["limit"] is None else f"{c['limit']:.3g}"
            lines.append(f"| {c['name']} | {c['value']:.4g} | {limit} | "
                         f"{'pass' if c['passed'] else 'FAIL'} |")
    decode = report.get("decode")
    if decode:
        lines += ["", "The `decode_*.onnx` graphs are this project's engine's (`python -m generation`): "
                  "GroupQueryAttention on a cache updated in place, MatMulNBits weights, logits of "
                  f"the last positions only. `decode.json` lists those that passed the gate; "
                  f"default `{decode['default']}`."]
    shown = report["files"].get("int8", report["files"]["fp32"])["file"]
    lines += ["", "```python", "from optimum.onnxruntime import ORTModelForCausalLM",
              f'model = ORTModelForCausalLM.from_pretrained(DIR, file_name="{shown}")',
              "```", ""]
    return "\n".join(lines)


def write_model_card(model_dir: Path, out: Path, report: dict) -> Path:
    """Copy the input's README.md (or start a minimal card) and append the export section.

    An export section already in the input card (a re-export) is replaced, not repeated.
    """
    source = Path(model_dir) / "README.md"
    if source.exists():
        text = source.read_text(encoding="utf-8").split(CARD_MARK)[0].rstrip() + "\n\n"
    else:
        text = ("---\nlibrary_name: optimum\ntags:\n- onnx\n- text-generation\n---\n\n"
                f"# {Path(model_dir).name} (ONNX)\n\nExported from `{model_dir}`.\n\n")
    path = out / "README.md"
    path.write_text(text + export_section(report), encoding="utf-8")
    return path


def push_to_hub(output_dir: Path, repo: str, api=None) -> str:
    """Upload the export directory into the `onnx/` folder of the model repo `repo`.

    The token comes from HF_TOKEN or the stored login (never printed).

    Args:
        output_dir: the validated export directory.
        repo: "owner/name" of the model repo (created if missing).
        api: an `HfApi`-like object (tests pass a fake; the Hub is unreachable there).

    Returns:
        The URL of the upload commit.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=os.environ.get("HF_TOKEN") or None)
    api.create_repo(repo_id=repo, repo_type="model", exist_ok=True)
    commit = api.upload_folder(folder_path=str(output_dir), repo_id=repo, repo_type="model",
                               path_in_repo="onnx", commit_message="Add validated ONNX export")
    return str(getattr(commit, "commit_url", commit))
