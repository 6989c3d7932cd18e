#!/usr/bin/env bash
# Every table, figure, comparison and power figure of the cloze placement study, from the committed results.json and
# predictions.jsonl.gz files (no weights). Run from the repository root: bash results/placement_cloze/analyse.sh
set -euo pipefail
R=results/placement_cloze
ID=arc_e,arc_c,boolq,obqa
OOD=piqa,siqa,winogrande
python -m analysis tables "$R" --out "$R/analysis"
python -m analysis compare "$R" --by placement --out "$R/analysis_by_placement" > /dev/null
python -m analysis power "$R" --by placement --out "$R/analysis_by_placement"
python -m analysis compare "$R" --by placement --sets "$ID" --out "$R/analysis_in_distribution" > /dev/null
python -m analysis power "$R" --by placement --sets "$ID" --out "$R/analysis_in_distribution"
python -m analysis compare "$R" --by placement --sets "$OOD" --out "$R/analysis_out_of_distribution" > /dev/null
python -m analysis power "$R" --by placement --sets "$OOD" --out "$R/analysis_out_of_distribution"
python -m analysis compare "$R" --sets "$ID" --out "$R/analysis_all_pairs_in_distribution" > /dev/null
python -m analysis compare "$R" --sets "$OOD" --out "$R/analysis_all_pairs_out_of_distribution" > /dev/null
