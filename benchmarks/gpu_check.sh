#!/bin/bash
# The checks that need a CUDA GPU, in one go (about 4 minutes on one H200):
#
#   bash benchmarks/gpu_check.sh [OUT]        # logs and results in OUT (default gpu-check/)
#
# 1. the test files that train, load, forecast and evaluate, with the GPU present (the CUDA-only
#    tests run too); a machine without PyBullet needs SIMVP_UNET_TINY_DATA pointing at a dataset
#    made elsewhere with `simvp-unet data generate --preset tiny --out DIR`;
# 2. benchmarks/models.py --device cuda --batch 4 (written to benchmarks/results/models_cuda_<gpu>.md,
#    named after the device, e.g. models_cuda_h100_80gb_hbm3.md);
# 3. the paper presets of the segmenter and predictor for 2 epochs and the dynamics for 100 steps on the
#    tiny data, then `evaluate` with them (bf16-mixed is chosen automatically on a bf16 GPU).
# Needs the package installed (`pip install -e .`; `--no-deps` where torch and the rest are there).
set -u
OUT=${1:-gpu-check}
mkdir -p "$OUT"
S=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
python3 -c "import sys, torch, lightning; print(sys.version.split()[0], 'torch', torch.__version__, 'lightning', \
lightning.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())" | tee -a "$OUT/env.txt"
DATA=${SIMVP_UNET_TINY_DATA:-$OUT/tiny}
[ -f "$DATA/dataset.json" ] || simvp-unet data generate --preset tiny --out "$DATA" > "$OUT/data.txt" 2>&1 || exit 1
export SIMVP_UNET_TINY_DATA=$DATA

echo "== tests ($((SECONDS - S)) s)"
python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_train_ddp.py tests/test_train_resume.py \
    tests/test_inference.py tests/test_pipelines.py tests/test_models.py tests/test_segmenter.py \
    tests/test_evaluate.py tests/test_evaluate_runs.py tests/test_objects.py tests/test_physics.py tests/test_metrics.py \
    tests/test_speed.py > "$OUT/pytest.txt" 2>&1
echo "pytest exit $?"; grep -E "passed|failed|FAILED|ERROR" "$OUT/pytest.txt" | tail -15

echo "== speed ($((SECONDS - S)) s)"
python3 benchmarks/models.py --device cuda --batch 4 > "$OUT/models_cuda.txt" 2>&1
echo "models.py exit $?: benchmarks/results/models_cuda_*.md"

echo "== cli ($((SECONDS - S)) s)"
RUNS=$OUT/runs
rm -rf "$RUNS"
{ simvp-unet train segmenter --data "$DATA" --preset paper --set epochs=2 --out "$RUNS/seg" &&
  simvp-unet train predictor --data "$DATA" --preset paper --set epochs=2 --out "$RUNS/pred" &&
  simvp-unet train dynamics --data "$DATA" --preset cpu --set max_steps=100 --out "$RUNS/dyn" &&
  simvp-unet evaluate --data "$DATA" --segmenter "$RUNS/seg" --predictor "$RUNS/pred" --dynamics "$RUNS/dyn" \
      --checkpoint last --out "$RUNS/eval"; } \
    > "$OUT/cli.txt" 2>&1
echo "cli exit $?"; tr '\r' '\n' < "$OUT/cli.txt" | grep -a -E "GPU available|Precision|best val|fitted physics|^\| (copy-last|frames|oracle|objects)"
echo "== done ($((SECONDS - S)) s)"
