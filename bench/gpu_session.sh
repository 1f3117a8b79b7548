#!/usr/bin/env bash
# One prepared script for a lent GPU (the device tool: 15 minutes in all, 10 per command). From the
# repository root, with the run folder carried (ignored paths travel only when named, 64 MiB at most):
#
#   run(command="bash bench/gpu_session.sh runs/gan/scratch_hp5e-5 6", carry=["runs/gan/scratch_hp5e-5"])
#
# 1. measures images/s of whole training steps at batch 64 / 128 / 256 (bench_train_step.py: the step is
#    bound by kernel launches on a GPU, so a larger batch trains more images per minute) and takes the best;
# 2. resumes the given training run for N minutes at that batch (renders made on the GPU; checkpoints and
#    quick metrics less often than on the CPU, where they cost nothing next to the step) and exports its
#    generator; everything written under $OUT comes back (the run's state.pt, log, samples, G.safetensors).
# FIGURES=1 first adds the synthesis timings of issue #15 (ms per image, fp32 / bf16 / fp16, 256-1024 px).
set -euo pipefail
RUN=${1:?usage: gpu_session.sh RUN_DIR MINUTES}
MINUTES=${2:?usage: gpu_session.sh RUN_DIR MINUTES}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"

python -c "import torch, gradio" 2>/dev/null || pip install -q -r requirements.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1

if [ "${FIGURES:-0}" = 1 ]; then
    timeout 240 python bench/bench_synthesis.py --device cuda --resolutions 256 512 1024 --batches 1 16 \
        2>&1 | tee "$OUT/synthesis_gpu.txt" || echo "synthesis figures stopped: $?" | tee -a "$OUT/synthesis_gpu.txt"
fi

timeout 120 python bench/bench_train_step.py --device cuda --batches 64 128 256 --steps 32 --run "$RUN" \
    2>&1 | tee "$OUT/train_step_gpu.txt" || true
BATCH=$(sed -n 's/^best batch: //p' "$OUT/train_step_gpu.txt")
BATCH=${BATCH:-64}
python -m interp.builtin.train_gan --run "$RUN" --kimg "${KIMG:-1000}" --minutes "$MINUTES" --device cuda \
    --config "{\"batch\": $BATCH}" --save-every 50 --snapshot-every 100 2>&1 | tail -n 5 | tee "$OUT/train.txt"
python -m interp.builtin.train_gan --run "$RUN" --export "$RUN/G.safetensors"
mkdir -p "$OUT/$RUN"
cp "$RUN"/state.pt "$RUN"/log.jsonl "$RUN"/config.json "$RUN"/G.safetensors "$RUN"/samples.png "$OUT/$RUN/"
