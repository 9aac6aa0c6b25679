"""The speed switches `python -m finetune` picks for a device: one rule, in one place.

`bench/train.py` measures variant (b) with exactly these choices against run_clm.py-style
Trainer defaults (a), and its `--try` option measures alternatives, so a default here is
changed by editing one constant after a measurement, never by guessing in the CLI.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass

ATTENTION_CHOICES = ("auto", "eager", "sdpa")


@dataclass(frozen=True)
class SpeedChoices:
    """Everything that changes training speed and nothing that changes what is learned.

    (bf16 changes the numerics within noise; the loss curves of bench/train.py show it.)
    """

    precision: str  # "bf16" (autocast, fp32 master weights) or "fp32"
    attn_implementation: str  # "eager" or "sdpa" (finetune/attention.py)
    optim: str  # a TrainingArguments.optim name
    torch_compile: bool
    tf32: bool  # TF32 tensor cores for the fp32 matmuls (CUDA, compute capability >= 8)
    dataloader_num_workers: int
    dataloader_pin_memory: bool

    def as_dict(self) -> dict:
        """The choices as a plain dict (for JSON)."""
        return dataclasses.asdict(self)


# THE CPU RULE, measured (`python bench/train.py --device cpu ...`, README's fine-tune section;
# bench/results/train_*_cpu_quiet*.json, 2-core AMD EPYC Zen 3, AVX2): torch.compile is the one
# switch that pays (125M: 1.29-1.36x run_clm's defaults; the demo model: 1.09x, with SDPA);
# with compile SDPA beats eager (1.36x vs 1.23x on 125M), without it eager beats SDPA (0.87-0.93x);
# fused AdamW adds 3-14 % without compile and nothing measurable with it (kept: it is never slower);
# bf16 on a CPU without AMX / AVX-512 BF16 is emulated and far slower (it did not finish 6 steps
# of 125M in 7 minutes where fp32 took 66 s), so fp32. Inductor needs a C++ compiler: without one
# the rule falls back to eager attention and no compile (`cpu_defaults`).
CPU_DEFAULTS = SpeedChoices(precision="fp32", attn_implementation="sdpa", optim="adamw_torch_fused",
                            torch_compile=True, tf32=False, dataloader_num_workers=0,
                            dataloader_pin_memory=False)
# What the CPU rule gives where torch.compile cannot run (the faster uncompiled attention).
CPU_NO_COMPILER = dataclasses.replace(CPU_DEFAULTS, attn_implementation="eager", torch_compile=False)
CXX_COMPILERS = ("g++", "c++", "clang++")

# CUDA: bf16 autocast where the GPU has it, SDPA (flash kernels for the global layers),
# fused AdamW, torch.compile, two loader workers feeding pinned memory.
CUDA_DEFAULTS = SpeedChoices(precision="bf16", attn_implementation="sdpa",
                             optim="adamw_torch_fused", torch_compile=True, tf32=True,
                             dataloader_num_workers=2, dataloader_pin_memory=True)


def training_device() -> str:
    """"cuda" where a CUDA GPU is visible, else "cpu" (other accelerators get the CPU rule)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_defaults(device: str) -> SpeedChoices:
    """The project's choices for "cuda" or "cpu", adjusted to what this GPU supports."""
    if device != "cuda":
        return cpu_defaults()
    import torch

    ampere = torch.cuda.get_device_capability()[0] >= 8
    return dataclasses.replace(
        CUDA_DEFAULTS, tf32=ampere,
        precision="bf16" if torch.cuda.is_bf16_supported() else "fp32")


def cpu_defaults() -> SpeedChoices:
    """CPU_DEFAULTS where a C++ compiler is on PATH (torch.compile's CPU backend builds C++),
    else CPU_NO_COMPILER; $CXX names the compiler when set, as for inductor."""
    compilers = [os.environ["CXX"]] if os.environ.get("CXX") else CXX_COMPILERS
    return CPU_DEFAULTS if any(shutil.which(c) for c in compilers) else CPU_NO_COMPILER


def speed_choices(device: str, precision: str = "auto", attn_implementation: str = "auto",
                  torch_compile: bool | None = None) -> SpeedChoices:
    """The device's defaults with the user's explicit choices on top.

    Args:
        device: "cuda" or "cpu".
        precision: "auto" (the rule), "bf16" or "fp32".
        attn_implementation: "auto" (the rule), "eager" or "sdpa".
        torch_compile: None (the rule), True or False.

    Returns:
        The resolved SpeedChoices.
    """
    choices = device_defaults(device)
    asked = {"precision": precision, "attn_implementation": attn_implementation}
    choices = dataclasses.replace(choices, **{k: v for k, v in asked.items() if v != "auto"})
    if torch_compile is not None:
        choices = dataclasses.replace(choices, torch_compile=torch_compile)
    return choices


def training_arguments_kwargs(choices: SpeedChoices) -> dict:
    """The TrainingArguments keywords that carry these choices (attention goes to the model)."""
    workers = choices.dataloader_num_workers
    return {"bf16": choices.precision == "bf16", "tf32": choices.tf32, "optim": choices.optim,
            "torch_compile": choices.torch_compile, "dataloader_num_workers": workers,
            "dataloader_pin_memory": choices.dataloader_pin_memory,
            "dataloader_persistent_workers": workers > 0}
