"""The shared fixtures build what they promise (the other tests rely on them)."""

def test_tiny_model_generates_and_uses_local_attention(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert model.config.attention_layers == ["global", "local"]
    ids = tok("We propose a new method for learning sparse representations", return_tensors="pt")
    assert ids.input_ids.shape[1] > model.config.window_size
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert out.shape[1] == ids.input_ids.shape[1] + 5


def test_tiny_onnx_has_kv_cache_io(tiny_onnx_dir):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tiny_onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name for i in sess.get_inputs()}
    outputs = {o.name for o in sess.get_outputs()}
    assert {"input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.1.value"} <= inputs
    assert {"logits", "present.0.key", "present.1.value"} <= outputs
    assert (tiny_onnx_dir / "tokenizer.json").exists()
    logits = next(o for o in sess.get_outputs() if o.name == "logits")
    assert logits.type == "tensor(float)"  # fp32 export
