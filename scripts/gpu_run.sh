#!/usr/bin/env bash
# Issue 22's GPU check, ON the device machine, in two calls of under 10 minutes each (the
# second right after the first, while the machine is warm; each reinstalls what it needs):
#   bash scripts/gpu_run.sh bench   the attention tests on CUDA, then bench/train.py --device cuda
#                                   for GPT-Neo-125M: (a), (b) and (b) without torch.compile
#   bash scripts/gpu_run.sh epoch   one epoch of python -m finetune --from-scratch gpt-neo-125m
#                                   on the arXiv corpus with (b)'s defaults
# Both carry .gpu/ (made by scripts/gpu_prepare.sh). Results land in $OUT (8 files at most).
set -uo pipefail
stage=${1:?usage: scripts/gpu_run.sh bench|epoch}
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
export NEO_SHARED_DIR=/tmp/shared
CORPUS=$NEO_SHARED_DIR/data/arxiv-cs-abstracts.jsonl
mkdir -p "$NEO_SHARED_DIR/data" "$NEO_SHARED_DIR/tokenizers/gpt2"
cp .gpu/gpt2/* "$NEO_SHARED_DIR/tokenizers/gpt2/"
if [ ! -s "$CORPUS" ]; then
  python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/corpus.jsonl.xz'), open('$CORPUS', 'wb'))"
  echo "$(cat .gpu/corpus.sha256)  $CORPUS" | sha256sum -c - || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name())"

case $stage in
bench)
  NEO_TEST_DEVICE=cuda timeout 120 python3 -m pytest tests/finetune/test_attention.py -q \
    -p no:cacheprovider 2>&1 | tee "$OUT/attention_tests_cuda.log"
  timeout 420 python3 bench/train.py --device cuda --model-size gpt-neo-125m --batch-size 32 \
    --steps 30 --warmup-steps 10 --try compile=off --data "$CORPUS" \
    --json "$OUT/train_gpt-neo-125m_cuda.json" 2>&1 | tee "$OUT/bench.log"
  ;;
epoch)
  args=(--from-scratch gpt-neo-125m --tokenizer "$NEO_SHARED_DIR/tokenizers/gpt2" --data "$CORPUS"
        --output-dir /tmp/epoch --batch-size 32 --gradient-accumulation-steps 1 --epochs 1
        --eval-steps 250 --report-to none --cache-dir /tmp/cache)
  timeout 540 python3 -m finetune "${args[@]}" 2>&1 | tee "$OUT/epoch.log"
  for f in metrics.json loss.png finetune_config.json trainer_state.json; do
    cp "/tmp/epoch/$f" "$OUT/epoch_$f" 2>/dev/null
  done
  cp /tmp/epoch/README.md "$OUT/epoch_model_card.md" 2>/dev/null
  ;;
*) echo "usage: scripts/gpu_run.sh bench|epoch" >&2; exit 2 ;;
esac
