#!/usr/bin/env bash
# The cloze grid's in-distribution sets scored whole (issue 25's power target, <= 3 points on the ID average): each
# of results/placement_cloze's 27 trained jobs re-evaluated from its saved adapter (mode=eval, the same likelihood
# scoring with the cloze prompt) on every question of ARC-Easy (2,376), ARC-Challenge (1,172), BoolQ (3,270) and
# OBQA (500), and the zero-shot base; then its analysis. Run from the repository root; a job already done is
# skipped, so it resumes across sessions. The adapters are not committed: it needs the grid's jobs run on this
# machine first.
set -euo pipefail
study=results/placement_cloze
out=results/placement_cloze_whole_id
ID=arc_e,arc_c,boolq,obqa
common=(+sweep=placement_cloze mode=eval "eval.datasets=[$ID]" eval.max_samples=null
        paths.data_dir=../shared/datasets/llm-adapters logger=none)
finished() {  # a job whose results.json says ok; a killed one (status running) is run again
  [ -f "$1/results.json" ] && python -c "import json,sys; sys.exit(json.load(open(sys.argv[1]))['status'] != 'ok')" \
      "$1/results.json"
}
finished "$out/base" || python run.py "${common[@]}" adapter=none seed=42 hydra.run.dir="$out/base"
for seed in 42 1 2; do  # a whole round of seeds before the next, as the grid ran
  for job in "$study"/*seed=$seed; do
    [ -d "$job/adapter" ] || continue
    name=$(python -c "import json,sys; a=json.load(open(sys.argv[1]))['axes']; print(a['adapter']+'@'+a['placement'])" \
        "$job/results.json")-seed$seed
    finished "$out/$name" || python run.py "${common[@]}" seed=$seed "adapter_path='$job/adapter'" \
        hydra.run.dir="$out/$name"
  done
done
python -m analysis tables "$out" --out "$out/analysis"
python -m analysis compare "$out" --by placement --out "$out/analysis_by_placement" > /dev/null
python -m analysis power "$out" --by placement --out "$out/analysis_by_placement"
python -m analysis compare "$out" --out "$out/analysis_all_pairs" > /dev/null
