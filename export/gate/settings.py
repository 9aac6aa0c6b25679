"""The gate's settings (the CLI's flags fill them) and what a gate run found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from export.gate import heldout
from export.gate.checks import Check


@dataclass
class GateSettings:
    """Limits and sizes of the gate (the CLI's flags fill these)."""

    atol: float = 1e-4
    steps: int = 3
    greedy_tokens: int = 64
    texts: Sequence[str] = field(default_factory=lambda: list(heldout.BUILTIN_TEXT))
    eval_tokens: int = 2048
    chunk_tokens: int = 128
    max_ppl_increase: dict[str, float | None] = field(
        default_factory=lambda: {"int8": 0.01, "int4": 0.03})
    min_agreement: float | None = None
    device: str = "cpu"


@dataclass
class GateResult:
    """Every check run, the quantized files' quality numbers, and the time spent."""

    checks: list[Check]
    quality: dict[str, dict[str, float]]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]
