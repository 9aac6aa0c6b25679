"""scripts/recover_demo_model.py: the checkpoint read back from an optimum int8 export."""

from __future__ import annotations

import importlib.util

import numpy as np

from tests.conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location(
        "recover_demo_model", REPO_ROOT / "scripts" / "recover_demo_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recovered_weights_are_the_int8_files_weights(exported, tiny_model_dir):
    from export.decode.checkpoint import load_weights

    _, out = exported
    original = load_weights(tiny_model_dir)
    recovered = _script().recovered_state_dict(out / "model_int8.onnx")
    assert "transformer.wte.weight" in recovered and "lm_head.weight" not in recovered
    assert set(recovered) == {k for k in original if k != "lm_head.weight"}
    for name, value in recovered.items():
        assert value.shape == original[name].shape, name
        if "_proj.weight" in name or ".c_fc.weight" in name:
            # per output channel int8: within half a step (|w|max / 127) of the fp32 weight
            step = np.abs(original[name]).max(axis=1, keepdims=True) / 127
            error = np.abs(value - original[name])
            assert (error <= 0.51 * step + 1e-7).all() and error.max() > 0, name
        else:
            assert np.array_equal(value, original[name]), name
