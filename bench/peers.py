"""Other CPU engines as rows of bench/decode.py: CTranslate2 and llama.cpp on GPT-2 124M.

    python bench/peers.py setup          # once: a separate venv with the peers, and their models
    ~/.cache/neo-xscience/peers-venv/bin/python bench/decode.py --random-init gpt-neo-125m \
        --batch 1 --backends engine "ctranslate2 int8" "llama.cpp Q4_0" "llama.cpp Q8_0"

Neither converter knows GPT-Neo, so the peers run GPT-2 124M with random weights (seed 0, as
`--random-init gpt-neo-125m`): the same hidden size, layers, heads, MLP and vocabulary, so the
same matmul shapes per token (GPT-2 has global attention in every layer and a 1,024 context).
The peers live in their own environment, never in requirements.txt: a venv made with
`--system-site-packages` (so it also sees the project's stack) plus ctranslate2 and
llama-cpp-python. llama-cpp-python compiles llama.cpp for this CPU (GGML_NATIVE) from its
source distribution, 10-25 min on 2 cores; the wheel is kept in ~/.cache/neo-xscience/wheels.
Its source distribution also carries llama.cpp's `convert_hf_to_gguf.py`, which turns the
PyTorch model into GGUF; `llama_model_quantize` then writes Q4_0 and Q8_0. Without the venv (or
under another Python) the rows are skipped with the setup command as the reason.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402
from bench._registry import BenchCase, BenchModel, Row, Skip, backend, measure  # noqa: E402

HOME = Path(os.environ.get("NEO_PEERS_HOME", Path.home() / ".cache" / "neo-xscience"))
VENV = HOME / "peers-venv"
WHEELS = HOME / "wheels"
MODELS = HOME / "bench" / "gpt2-124m"
VERSIONS = {"ctranslate2": "4.8.5", "llama-cpp-python": "0.3.36", "gguf": "0.19.0"}
SETUP = "python bench/peers.py setup, then run bench/decode.py with " + str(VENV / "bin" / "python")


def build_gpt2(out: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """GPT-2 124M with random weights (torch seed `seed`) and the GPT-2 tokenizer, saved."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config()).eval().save_pretrained(out)
    GPT2TokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config["n_ctx"] = config["n_positions"]  # llama.cpp's converter reads the old field name
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def setup(tokenizer_dir: Path, log=print) -> None:
    """Make the peers' venv and convert GPT-2 124M for each (skips what already exists)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    llama = f"llama-cpp-python=={VERSIONS['llama-cpp-python']}"
    if not list(WHEELS.glob(f"llama_cpp_python-{VERSIONS['llama-cpp-python']}-*.whl")):
        log(f"[peers] building {llama} for this CPU (10-25 min on 2 cores) ...")
        subprocess.run([str(python), "-m", "pip", "wheel", "--no-deps", llama, "-w", str(WHEELS)], check=True)
    subprocess.run(pip + ["--find-links", str(WHEELS), llama, f"ctranslate2=={VERSIONS['ctranslate2']}",
                          f"gguf=={VERSIONS['gguf']}"], check=True)
    subprocess.run([str(python), __file__, "convert", "--tokenizer", str(tokenizer_dir)], check=True)


def convert(tokenizer_dir: Path, log=print) -> None:
    """(In the peers' venv) GPT-2 124M as PyTorch, CTranslate2 int8 and GGUF f32/Q4_0/Q8_0."""
    torch_dir = MODELS / "pytorch"
    if not (torch_dir / "config.json").exists():
        log(f"[peers] building random-init GPT-2 124M in {torch_dir}")
        build_gpt2(torch_dir, tokenizer_dir)
    if not (MODELS / "ct2-int8" / "model.bin").exists():
        from ctranslate2.converters import TransformersConverter

        log("[peers] converting to CTranslate2 int8")
        TransformersConverter(str(torch_dir)).convert(str(MODELS / "ct2-int8"), quantization="int8", force=True)
    f32 = MODELS / "gpt2-f32.gguf"
    if not f32.exists():
        script = _llama_converter()
        log("[peers] converting to GGUF (llama.cpp's convert_hf_to_gguf.py)")
        env = {**os.environ, "PYTHONPATH": str(script.parent / "gguf-py")}
        subprocess.run([sys.executable, str(script), str(torch_dir), "--outfile", str(f32), "--outtype", "f32"],
                       check=True, env=env)
    import llama_cpp

    for name in ("Q4_0", "Q8_0"):
        path = MODELS / f"gpt2-{name.lower()}.gguf"
        if not path.exists():
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
            if llama_cpp.llama_model_quantize(str(f32).encode(), str(path).encode(), ctypes.byref(params)):
                raise RuntimeError(f"llama_model_quantize to {name} failed")
            log(f"[peers] wrote {path}")


def _llama_converter() -> Path:
    """llama.cpp's converter (and its gguf-py) from llama-cpp-python's source distribution."""
    where = HOME / "peers" / "llama.cpp"
    script = where / "convert_hf_to_gguf.py"
    if script.exists():
        return script
    sdist = HOME / "peers" / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={VERSIONS['llama-cpp-python']}", "-d", str(sdist)], check=True)
    archive = next(sdist.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        prefix = f"{archive.name[:-len('.tar.gz')]}/vendor/llama.cpp/"
        wanted = [m for m in tar.getmembers() if m.name.startswith(prefix) and (
            m.name == prefix + "convert_hf_to_gguf.py"
            or m.name.startswith((prefix + "gguf-py/", prefix + "conversion/")))]
        for member in wanted:
            member.name = member.name[len(prefix):]
        tar.extractall(where, members=wanted, filter="data")
    return script


def _case_fits(case: BenchCase) -> None:
    if case.batch != 1:
        raise Skip("the peers' rows are measured at batch 1")
    if len(case.prompts[0]) + case.new_tokens > 1024:
        raise Skip("GPT-2's context is 1,024 tokens")


@backend("ctranslate2 int8")
def ctranslate2_int8(model: BenchModel, case: BenchCase) -> Row:
    """CTranslate2's generate_tokens, greedy, int8 weights, `model.threads` intra threads."""
    try:
        import ctranslate2
    except ImportError:
        raise Skip(f"ctranslate2 is not installed here ({SETUP})") from None
    _case_fits(case)
    if not (MODELS / "ct2-int8" / "model.bin").exists():
        raise Skip(f"no converted GPT-2 in {MODELS} ({SETUP})")
    model.loaded.setdefault("peer info", {})["ctranslate2"] = (
        f"{ctranslate2.__version__}, {ctranslate2.get_supported_compute_types('cpu')}")
    gen = model.cached("ct2", lambda: ctranslate2.Generator(
        str(MODELS / "ct2-int8"), device="cpu", compute_type="int8", intra_threads=model.threads,
        inter_threads=1))
    tokens = model.tokenizer.convert_ids_to_tokens(case.prompts[0])

    def run(n: int, tick) -> None:
        steps = 0
        for _ in gen.generate_tokens(tokens, max_length=n, sampling_topk=1, end_token=[]):
            tick()
            steps += 1
        assert steps == n
    return measure("ctranslate2 int8", run, case)


def _llama(quant: str):
    def runner(model: BenchModel, case: BenchCase) -> Row:
        """llama.cpp through llama-cpp-python: one eval of the prompt, then one per token."""
        try:
            import llama_cpp
            import numpy as np
        except ImportError:
            raise Skip(f"llama-cpp-python is not installed here ({SETUP})") from None
        _case_fits(case)
        path = MODELS / f"gpt2-{quant.lower()}.gguf"
        if not path.exists():
            raise Skip(f"{path} is absent ({SETUP})")
        llm = model.cached(f"llama {quant}", lambda: llama_cpp.Llama(
            str(path), n_ctx=1024, n_batch=512, n_threads=model.threads, n_threads_batch=model.threads,
            verbose=False))
        model.loaded.setdefault("peer info", {})["llama.cpp"] = (
            f"llama-cpp-python {llama_cpp.__version__}: {llama_cpp.llama_print_system_info().decode()}")

        def run(n: int, tick) -> None:
            llm.reset()
            llm.eval(case.prompts[0])
            for i in range(n):
                # Without logits_all, eval keeps no scores: read the last position's logits.
                logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
                token = int(np.argmax(logits))
                tick()
                if i + 1 < n:
                    llm.eval([token])
        return measure(f"llama.cpp {quant}", run, case)
    return runner


for _quant in ("Q4_0", "Q8_0"):
    backend(f"llama.cpp {_quant}")(_llama(_quant))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/peers.py", description=__doc__.split("\n")[0])
    p.add_argument("step", choices=["setup", "convert"],
                   help="setup: make the venv and convert (run this); convert: the models only "
                        "(run by setup inside the venv)")
    p.add_argument("--tokenizer", type=Path, default=_setup.SHARED_GPT2,
                   help="GPT-2 tokenizer files (default: ../shared/tokenizers/gpt2)")
    args = p.parse_args(argv)
    if not (args.tokenizer / "vocab.json").exists():
        print(f"error: --tokenizer {args.tokenizer}: no GPT-2 vocab.json (set NEO_SHARED_DIR)", file=sys.stderr)
        return 2
    if args.step == "convert":
        convert(args.tokenizer)
        return 0
    setup(args.tokenizer)
    print(f"[peers] ready: {SETUP.split(', then ')[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
