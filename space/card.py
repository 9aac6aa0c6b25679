"""The Space's README.md: the YAML front matter the Hub reads, and the page people see.

The keys follow https://huggingface.co/docs/hub/spaces-config-reference. The Hub rejects a
`short_description` longer than 60 characters, so it is checked here, before any upload.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

DATASET_ID = "yaolu/multi_x_science_sum"
SHORT_DESCRIPTION = "Greedy vs sampling vs top-k/top-p, side by side"
MAX_SHORT_DESCRIPTION = 60
DEFAULT_TITLE = "GPT-Neo XScience decoding"
PLACEHOLDER_SPACE_ID = "USER/SPACE"
TAGS = [
    "text-generation",
    "gpt-neo",
    "onnx",
    "onnxruntime",
    "decoding-strategies",
    "scientific-writing",
]


@dataclass(frozen=True)
class CardInfo:
    """What the Space's README.md says about this particular bundle.

    Attributes:
        title: display title of the Space.
        sdk_version: the gradio version the Space installs (the project's pinned gradio).
        python_version: the Python the Space runs ("3.11").
        models: Hub model ids the Space uses (empty for an embedded model without one).
        model_ref: the Hub id the app downloads (or the source of an embedded model).
        embedded: whether the model's files ship inside the bundle, in `model/`.
        hardware: the suggested hardware flavour ("cpu-basic", or a GPU flavour).
        space_id: the Space's id for the gradio_client snippet (a placeholder if unknown).
        build_command: the command that produced the bundle, for provenance.
    """

    title: str
    sdk_version: str
    python_version: str
    models: list[str]
    model_ref: str
    embedded: bool
    hardware: str
    space_id: str
    build_command: str


def front_matter(info: CardInfo) -> dict:
    """The Spaces configuration for this bundle, in the order the docs list it.

    Args:
        info: the bundle's card information.

    Returns:
        A dict ready for `yaml.safe_dump`.
    """
    return {
        "title": info.title,
        "emoji": "🔬",
        "colorFrom": "indigo",
        "colorTo": "green",
        "sdk": "gradio",
        "sdk_version": info.sdk_version,
        "python_version": info.python_version,
        "app_file": "app.py",
        "pinned": False,
        "models": list(info.models),
        "datasets": [DATASET_ID],
        "license": "apache-2.0",
        "short_description": SHORT_DESCRIPTION,
        "suggested_hardware": info.hardware,
        "tags": list(TAGS),
    }


def render_card(info: CardInfo) -> str:
    """The whole README.md: `---` front matter `---`, then what the Space does and how to call it.

    Args:
        info: the bundle's card information.

    Returns:
        The file's text.

    Raises:
        ValueError: the short description is over the Hub's limit.
    """
    if len(SHORT_DESCRIPTION) > MAX_SHORT_DESCRIPTION:
        raise ValueError(f"short_description is over {MAX_SHORT_DESCRIPTION} characters")
    meta = yaml.safe_dump(front_matter(info), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n{_body(info)}"


def _body(info: CardInfo) -> str:
    if info.embedded:
        model_line = (
            "The model ships inside this Space, in `model/` (ONNX weights, tokenizer, configs)."
        )
    else:
        model_line = (
            f"The app downloads [`{info.model_ref}`](https://huggingface.co/{info.model_ref}) "
            "at start (its ONNX files, from `onnx/`). Set the Space variable `MODEL_ID` to "
            "serve another model with the same layout."
        )
    return f"""# {info.title}

GPT-Neo fine-tuned on scientific abstracts (Multi-XScience), decoded three ways from one
prompt, streaming side by side: **Greedy** | **Sampling** (temperature) | **Top-k / Top-p**.
The three strategies run as rows of one batched ONNX Runtime pass per step; no PyTorch is
installed here (`requirements.txt`: onnxruntime, tokenizers, numpy, huggingface_hub).

{model_line}

## Call it from Python

```python
from gradio_client import Client

client = Client("{info.space_id}")
greedy, sampling, top_k_top_p = client.predict(
    "We propose a new method for",  # prompt
    64,    # max_new_tokens
    0.8,   # temperature (sampling and top-k/top-p columns)
    50,    # top_k
    0.95,  # top_p
    0,     # seed
    api_name="/generate",
)
print(greedy, sampling, top_k_top_p, sep="\\n---\\n")
```

`client.submit(...)` with the same arguments streams the growing texts.

## Run it locally

```bash
pip install -r requirements.txt gradio=={info.sdk_version}
python app.py
```

Built with `{info.build_command}`.
"""
