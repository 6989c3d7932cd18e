#!/usr/bin/env bash
# Every table, figure, comparison and power figure of the cloze placement study on both models, and the contrast of
# the two models' placement differences, from the committed results.json and predictions.jsonl.gz files (no
# weights). Run from the repository root: bash results/placement_cloze/analyse.sh
set -euo pipefail
ID=arc_e,arc_c,boolq,obqa
OOD=piqa,siqa,winogrande
for R in results/placement_cloze results/placement_cloze_gemma3; do
  python -m analysis tables "$R" --out "$R/analysis"
  python -m analysis compare "$R" --by placement --out "$R/analysis_by_placement" > /dev/null
  python -m analysis power "$R" --by placement --out "$R/analysis_by_placement"
  python -m analysis compare "$R" --by placement --sets "$ID" --out "$R/analysis_in_distribution" > /dev/null
  python -m analysis power "$R" --by placement --sets "$ID" --out "$R/analysis_in_distribution"
  python -m analysis compare "$R" --by placement --sets "$OOD" --out "$R/analysis_out_of_distribution" > /dev/null
  python -m analysis power "$R" --by placement --sets "$OOD" --out "$R/analysis_out_of_distribution"
  python -m analysis compare "$R" --sets "$ID" --out "$R/analysis_all_pairs_in_distribution" > /dev/null
  python -m analysis compare "$R" --sets "$OOD" --out "$R/analysis_all_pairs_out_of_distribution" > /dev/null
done
# Where the two models disagree: each placement pair's difference on SmolLM2 minus the same on Gemma (the series and
# LoRA pairs both studies ran), on all seven sets, in and out of distribution.
M="python -m analysis interaction results/placement_cloze results/placement_cloze_gemma3 --by placement"
$M --out results/placement_cloze/analysis_models > /dev/null
$M --sets "$ID" --out results/placement_cloze/analysis_models_in_distribution > /dev/null
$M --sets "$OOD" --out results/placement_cloze/analysis_models_out_of_distribution > /dev/null
