#!/usr/bin/env bash
# Run once HERE (the machine without the GPU), in the checkout that the device tool sends:
# fills the git-ignored .gpu/ with what the GPU machine lacks, for scripts/gpu_run.sh.
#   .gpu/whl/      the pinned transformers 4.57.6, huggingface-hub 0.36.2, tokenizers 0.22.2
#                  for its Python 3.12 (it has transformers 5.x, which this project is not for)
#   .gpu/gpt2/     the GPT-2 tokenizer files from ../shared
#   .gpu/corpus.jsonl.xz + .sha256   the arXiv corpus from ../shared, recompressed: the .gz
#                  (42 MiB) with the wheels (15 MiB) and the checkout (14 MiB) would pass the
#                  64 MiB a call may carry; xz brings it to ~27 MiB (about 5 min with -T0).
# Then: device run, command "bash scripts/gpu_run.sh bench", carry [".gpu"] (README, fine-tune).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${NEO_SHARED_DIR:-../shared}
mkdir -p .gpu/whl .gpu/gpt2
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .gpu/whl transformers==4.57.6 huggingface-hub==0.36.2 tokenizers==0.22.2
install -m 644 "$SHARED/tokenizers/gpt2/vocab.json" "$SHARED/tokenizers/gpt2/merges.txt" .gpu/gpt2/
gzip -dc "$SHARED/data/arxiv-cs-abstracts.jsonl.gz" | sha256sum | cut -d' ' -f1 > .gpu/corpus.sha256
if [ ! -s .gpu/corpus.jsonl.xz ]; then
  gzip -dc "$SHARED/data/arxiv-cs-abstracts.jsonl.gz" | xz -9 -T0 > .gpu/corpus.jsonl.xz.partial
  mv .gpu/corpus.jsonl.xz.partial .gpu/corpus.jsonl.xz
fi
xz -dc .gpu/corpus.jsonl.xz | sha256sum | cut -d' ' -f1 | cmp -s - .gpu/corpus.sha256 \
  || { echo "error: .gpu/corpus.jsonl.xz does not match ../shared's corpus; delete it and rerun" >&2; exit 1; }
du -sh .gpu
git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "checkout: %.1f MiB (with .gpu/ at most 64 MiB may travel)\n", $1 / 2^20}'
