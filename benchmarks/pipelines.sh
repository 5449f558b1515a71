#!/usr/bin/env bash
# The results table of benchmarks/results/pipelines.md: every pipeline on the bench dataset
# with the cpu presets, from scratch, timing each step. Run from the repository root:
#
#     bash benchmarks/pipelines.sh [DATA_DIR] [RUNS_DIR]
#
# About 60 minutes on a 2-core CPU; every step is skipped when its output exists. With
# ROWS=objects only the rows of the segmenter and the dynamics run (the README's table), about
# 35 minutes. Writes
# $RUNS/eval (segmented inputs) and $RUNS/eval-true (the true masks of frames 1..11 as inputs),
# and benchmarks/results/pipelines.json ({"jaccard": {row: J}, "skill": {row: S}, ...,
# "true_inputs": the same from the true input masks}).
set -euo pipefail
DATA=${1:-data/bench}
RUNS=${2:-runs/bench}
ROWS=${ROWS:-all}
case $ROWS in all|objects) ;; *) echo "ROWS must be all or objects, got $ROWS" >&2; exit 2;; esac
EVAL=$RUNS/eval
mkdir -p "$RUNS"
log() { printf '\n== %s  (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name: $((SECONDS - t0)) s" | tee -a "$RUNS/timings.txt"; }

log data
[ -f "$DATA/.complete" ] || { timed generate simvp-unet data generate --out "$DATA" --preset bench --workers 2 \
    && timed pack simvp-unet data pack "$DATA" && touch "$DATA/.complete"; }
log segmenter
[ -f "$RUNS/seg/checkpoints/best.ckpt" ] || timed segmenter simvp-unet train segmenter --data "$DATA" --preset cpu --out "$RUNS/seg"
log label
timed label simvp-unet label --data "$DATA" --segmenter "$RUNS/seg"
FRAME_RUNS=() MASK_RUNS=()
if [ "$ROWS" = all ]; then
    log predictor
    [ -f "$RUNS/pred/checkpoints/best.ckpt" ] || timed predictor simvp-unet train predictor --data "$DATA" --preset cpu --out "$RUNS/pred"
    log forecaster
    [ -f "$RUNS/fc/checkpoints/best.ckpt" ] || timed forecaster simvp-unet train forecaster --data "$DATA" --preset cpu --out "$RUNS/fc"
    FRAME_RUNS=(--predictor "$RUNS/pred") MASK_RUNS=(--forecaster "$RUNS/fc")
fi
log dynamics
[ -f "$RUNS/dyn/checkpoints/best.ckpt" ] || timed dynamics simvp-unet train dynamics --data "$DATA" --preset cpu --out "$RUNS/dyn"
# the last checkpoints: `best` is chosen on val, the split scored here
log evaluate
timed evaluate simvp-unet evaluate --data "$DATA" --split val --segmenter "$RUNS/seg" "${FRAME_RUNS[@]}" \
    "${MASK_RUNS[@]}" --dynamics "$RUNS/dyn" --checkpoint last --out "$EVAL"
log "evaluate from the true input masks"
timed evaluate-true simvp-unet evaluate --data "$DATA" --split val --segmenter "$RUNS/seg" \
    "${MASK_RUNS[@]}" --dynamics "$RUNS/dyn" --checkpoint last --input-masks true --out "$RUNS/eval-true"
python - "$EVAL/results.json" "$RUNS/eval-true/results.json" benchmarks/results/pipelines.json "$RUNS" <<'PY'
# a new measurement replaces the file (the README's table is checked against it: update both)
import json, os, subprocess, sys, time
from simvp_unet.hardware import cpu_features
segmented, true = (json.load(open(p)) for p in sys.argv[1:3])
keep = lambda r: {"jaccard": r["jaccard"], "skill": r["skill"], "breakdown": r["breakdown"], "videos": r["videos"]}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
setup = {"command": f"ROWS={os.environ.get('ROWS', 'all')} bash benchmarks/pipelines.sh", "runs": sys.argv[4], "commit": commit,
         "machine": cpu_features().summary(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
json.dump({"setup": setup, **keep(segmented), "true_inputs": keep(true)}, open(sys.argv[3], "w"), indent=1)
PY
