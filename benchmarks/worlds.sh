#!/usr/bin/env bash
# Does the method transfer to other worlds? For each world (the default, `dense`, `camera`):
# generate its data at the demo's size (no hidden videos), train the segmenter, pseudo-label the
# unlabeled videos, train the dynamics with the demo's settings (the `cpu` presets shortened as
# `simvp-unet demo` does), then evaluate every row on every world's val: the 3 x 3 table of
# trained-on x evaluated-on. Run from the repository root:
#
#     bash benchmarks/worlds.sh [ROOT]        # default ROOT: runs/worlds
#
# About 35 minutes on a 2-core CPU; every step is skipped when its output exists. Writes
# ROOT/<world>/{data,seg,dyn}, ROOT/eval/<trained>-on-<evaluated>/ and
# benchmarks/results/worlds.json and worlds.md.
set -euo pipefail
ROOT=${1:-runs/worlds}
WORLDS=(default dense camera)
mkdir -p "$ROOT"
log() { printf '\n== %s  (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name: $((SECONDS - t0)) s" | tee -a "$ROOT/timings.txt"; }
# the demo's shortening of the cpu presets (simvp_unet.kinds: Kind.demo)
SEGMENTER=(--preset cpu --set epochs=20 --set val_every_epochs=20)
DYNAMICS=(--preset cpu --set max_steps=600)

for world in "${WORLDS[@]}"; do
    preset=$([ "$world" = default ] && echo demo || echo "$world")
    data=$ROOT/$world/data
    log "$world: data ($preset)"
    [ -f "$data/.complete" ] || { timed "$world generate" simvp-unet data generate --out "$data" --preset "$preset" \
        --hidden 0 --workers 2 && touch "$data/.complete"; }
    log "$world: segmenter"
    [ -f "$ROOT/$world/seg/checkpoints/last.ckpt" ] || timed "$world segmenter" simvp-unet train segmenter \
        --data "$data" "${SEGMENTER[@]}" --out "$ROOT/$world/seg"
    log "$world: pseudo-labels"
    timed "$world label" simvp-unet label --data "$data" --segmenter "$ROOT/$world/seg"
    log "$world: dynamics"
    [ -f "$ROOT/$world/dyn/checkpoints/last.ckpt" ] || timed "$world dynamics" simvp-unet train dynamics \
        --data "$data" "${DYNAMICS[@]}" --out "$ROOT/$world/dyn"
done

for trained in "${WORLDS[@]}"; do
    for evaluated in "${WORLDS[@]}"; do
        out=$ROOT/eval/$trained-on-$evaluated
        log "trained on $trained, evaluated on $evaluated"
        [ -f "$out/results.json" ] || timed "eval $trained on $evaluated" simvp-unet evaluate \
            --data "$ROOT/$evaluated/data" --split val --segmenter "$ROOT/$trained/seg" \
            --dynamics "$ROOT/$trained/dyn" --checkpoint last --pictures 2 --out "$out"
    done
done

python - "$ROOT" "${WORLDS[@]}" <<'PY'
# a new measurement replaces both files
import json, os, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from provenance import provenance
from simvp_unet.io import write_json, write_text

root, worlds = Path(sys.argv[1]), sys.argv[2:]
table = {t: {e: json.loads((root / "eval" / f"{t}-on-{e}" / "results.json").read_text()) for e in worlds}
         for t in worlds}
keep = {t: {e: {k: r[k] for k in ("jaccard", "skill", "videos")} for e, r in row.items()} for t, row in table.items()}
stats = {w: json.loads((root / w / "data" / "dataset.json").read_text()) for w in worlds}
threads = os.environ.get("SIMVP_UNET_THREADS")
head = provenance((f"SIMVP_UNET_THREADS={threads} " if threads else "") + f"bash benchmarks/worlds.sh {root}")
write_json("benchmarks/results/worlds.json", {"setup": head, "worlds": {w: stats[w].get("preset") for w in worlds},
                                              "trained_on": keep})
rows = list(next(iter(keep.values()))[worlds[0]]["jaccard"])
lines = ["# Transfer across worlds", "", *head, "",
         "The segmenter and the dynamics trained on one world (rows), every row of the results table "
         "evaluated on the val split of each world (columns, 30 videos each). Skill = (J - J_copy) / "
         "(J_oracle - J_copy), with the copy-last and oracle rows of the same runs on the same world: "
         "off the diagonal, where the segmenter itself does not transfer, compare the Jaccard. The "
         "diagonal is each world retrained on itself.", ""]
timings = root / "timings.txt"
if timings.is_file():
    lines += ["Step times (seconds, from ROOT/timings.txt):", "", "```", timings.read_text().strip(), "```", ""]
for row in rows:
    lines += [f"## {row}", "", "| trained on \\ evaluated on | " + " | ".join(worlds) + " |",
              "|---|" + "---:|" * len(worlds)]
    for t in worlds:
        cells = [f"{keep[t][e]['jaccard'][row]:.4f} (skill {keep[t][e]['skill'][row]:.3f})"
                 if keep[t][e]["skill"].get(row) is not None else f"{keep[t][e]['jaccard'][row]:.4f}"
                 for e in worlds]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append("")
write_text("benchmarks/results/worlds.md", "\n".join(lines))
print("\n".join(lines))
PY
