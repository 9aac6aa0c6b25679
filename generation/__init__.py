"""A torch-free decoding engine for ONNX causal LMs (onnxruntime + numpy + tokenizers).

    from generation import Engine, SamplingParams
    engine = Engine.load("out/onnx")
    rows = engine.generate("We propose", [SamplingParams(), SamplingParams(temperature=0.8, top_p=0.9, seed=0)])
    logprobs = engine.score("We propose a method.").logprobs
"""

from .configs import ModelFileError
from .engine import Engine
from .sampling.candidates import Candidates
from .sampling.params import Hypothesis, RowResult, RowStats, SamplingParams, StepUpdate
from .score import ScoreResult

__all__ = ["Candidates", "Engine", "Hypothesis", "ModelFileError", "RowResult", "RowStats",
           "SamplingParams", "ScoreResult", "StepUpdate"]
