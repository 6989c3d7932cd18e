#!/usr/bin/env bash
# The generation cross-check of the cloze grid (issue 25): each seed-42 cell of results/placement_cloze re-evaluated
# from its saved adapter (mode=eval) by the paper's generation protocol (4 beams, 32 new tokens), its response read
# for the option text it names (eval.prompt=paper_cloze), on the first 300 ARC-Easy test questions (those the
# likelihood scored); then the agreement of the two methods' rankings. Run from the repository root; a cell already
# done is skipped. The adapters are not committed: this needs the study's jobs run on this machine first.
set -euo pipefail
study=results/placement_cloze
out=results/placement_cloze_generation
common=(+sweep=placement_cloze mode=eval eval.method=generate eval.prompt=paper_cloze 'eval.datasets=[arc_e]'
        eval.max_samples=300 seed=42 paths.data_dir=../shared/datasets/llm-adapters logger=none)
[ -f "$out/base/results.json" ] || python run.py "${common[@]}" adapter=none hydra.run.dir="$out/base"
for job in "$study"/*seed=42; do
    [ -d "$job/adapter" ] || continue
    cell=$(python -c "import json,sys; a=json.load(open(sys.argv[1]))['axes']; print(a['adapter']+'@'+a['placement'])" \
        "$job/results.json")
    [ -f "$out/$cell/results.json" ] || python run.py "${common[@]}" "adapter_path='$job/adapter'" hydra.run.dir="$out/$cell"
done
python -m analysis agreement "$study" "$out" --set arc_e --out "$out/analysis"
