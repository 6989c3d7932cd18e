"""``python -m analysis tables RESULTS_DIR... [--out DIR]``: every results.json below the directories → the paper's
tables (Markdown, LaTeX, CSV), its placement and configuration figures (PNG), the paired comparisons of every two
cells (comparisons.md/.csv) and jobs.csv listing every job (failed and skipped ones too); for likelihood jobs a
second table of acc_norm (``<domain>_norm_table.*``). ``--wandb ENTITY/PROJECT`` reads the same from a W&B project's
runs, ``--jobs JOBS_CSV`` from an earlier jobs.csv (a study whose results.json files were not kept: intervals from
the counts).

``python -m analysis search SWEEP_DIR [--out DIR] [--storage URL] [--study NAME]``: a search's trials, its best
trial or Pareto front with intervals, and its history and Pareto figures (``analysis.search``).

``python -m analysis compare RESULTS_DIR... [--by AXIS] [--sets A,B] [--out DIR]``: the paired comparisons alone,
printed one line per pair and set; ``--by placement`` (or any axis or config key) keeps the pairs that differ in it
alone; ``--sets arc_e,boolq`` keeps those sets and their average (an in-distribution average beside an
out-of-distribution one).

``python -m analysis power RESULTS_DIR... [--by AXIS] [--sets A,B] [--out DIR]``: the power the finished study had
(``analysis.power``): its disagreement and seed spread measured from its predictions, and the minimum detectable
paired difference on the average they imply after Holm (power.json).

``python -m analysis interaction FIRST SECOND [--by AXIS] [--sets A,B] [--out DIR]``: whether two studies (two
models) find the same difference between each pair of cells both compare (``analysis.interaction``): the difference
of the two differences, its interval and Holm-adjusted p (interaction.md/.csv).

``python -m analysis agreement RESULTS_DIR... --set arc_e [--out DIR]``: whether likelihood and generation rank the
cells alike (``analysis.agreement``): each cell scored by both methods, and the rank correlations across cells."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from analysis import agreement, interaction
from analysis import power as measured_power
from analysis.collect import NoResults, from_jobs_csv, from_wandb, load_existing
from analysis.compare import CompareError, comparisons, write
from analysis.figures import configuration_figure, placement_figure
from analysis.search import SearchError
from analysis.search import write as write_search
from analysis.tables import domain_sets, formatted, table, tex_escaped
from llm_adapters.errors import OneLineParser


def _write_table(numbers, stem: Path) -> None:
    """One table as CSV (the numbers), Markdown and LaTeX (formatted cells, the significant best in bold)."""
    numbers.to_csv(stem.with_suffix(".csv"), index=False)
    formatted(numbers, ("**", "**")).to_markdown(stem.with_suffix(".md"), index=False)
    latex = tex_escaped(formatted(numbers, (r"\textbf{", "}"))).to_latex(index=False, escape=False)
    stem.with_suffix(".tex").write_text(latex)


def tables(
    directories: list[Path], out: Path, wandb_project: str | None = None, jobs: Path | None = None
) -> dict[str, object]:
    """Write everything into ``out``; returns what was written and the figures' series. The jobs come from the
    results.json files below ``directories``, a W&B project, or an earlier ``jobs.csv``."""
    df = from_wandb(wandb_project) if wandb_project else from_jobs_csv(jobs) if jobs else load_existing(directories)
    if df.empty:
        raise NoResults(f"no results under {wandb_project or jobs}")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "jobs.csv", index=False)
    written: dict[str, object] = {"jobs": len(df), "statuses": df["status"].value_counts().to_dict()}
    for domain in ("math", "commonsense"):
        for metric, name in (("acc", f"{domain}_table"), ("accn", f"{domain}_norm_table")):  # accn: loglik's acc_norm
            numbers = table(df, domain, metric)
            if not numbers.empty:
                written[name] = len(numbers)
                _write_table(numbers, out / name)
        if f"{domain}_table" not in written:
            continue
        sets = domain_sets(df, domain)
        for figure, draw in (("placement", placement_figure), ("configuration", configuration_figure)):
            written[f"{domain}_{figure}"] = drawn = draw(df, sets, out / f"{domain}_{figure}.png")
            if not drawn:
                print(f"{domain} {figure} figure: nothing to plot (no adapter at two or more {figure}s)")
    try:
        found = comparisons(df)
    except CompareError as error:
        print(f"comparisons: {error}")
    else:
        written["comparisons"] = len(write(found, out))
    return written


def pairs_command(command: str, directories: list[Path], out: Path, by: str | None, sets: str | None) -> int:
    """``compare`` (the verdict lines) or ``power`` (the measured power's line) over the pairs of cells."""
    df = load_existing(directories)
    only = sets.split(",") if sets else None
    try:
        lines = (
            write(comparisons(df, by, only), out) if command == "compare" else [measured_power.write(df, out, by, only)]
        )
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def interaction_command(first: Path, second: Path, out: Path, by: str | None, sets: str | None) -> int:
    """``interaction``: the two studies' contrasts, a line each."""
    frames = [load_existing([directory]) for directory in (first, second)]
    try:
        found = interaction.interactions(*frames, by, sets.split(",") if sets else None)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = (interaction.study_name(frames[0], first), interaction.study_name(frames[1], second))
    print("\n".join(interaction.write(found, names, out)))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except NoResults as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = OneLineParser(prog="python -m analysis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("tables", help="tables and figures from results directories")
    cmd.add_argument("directories", nargs="*", type=Path)
    cmd.add_argument("--out", type=Path, default=Path("analysis_out"))
    cmd.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs of a W&B project instead")
    cmd.add_argument("--jobs", type=Path, metavar="JOBS_CSV", help="read an earlier jobs.csv of this command instead")
    cmp = sub.add_parser("compare", help="paired comparisons of the cells, Holm-adjusted")
    cmp.add_argument("directories", nargs="+", type=Path)
    cmp.add_argument("--by", help="only pairs that differ in this axis alone (placement, adapter, size, train.lr, ...)")
    cmp.add_argument("--sets", help="only these sets, comma-separated (and their average): arc_e,arc_c,boolq,obqa")
    cmp.add_argument("--out", type=Path, default=Path("analysis_out"))
    pw = sub.add_parser("power", help="the power a finished study had, measured from its predictions")
    pw.add_argument("directories", nargs="+", type=Path)
    pw.add_argument("--by", help="only pairs that differ in this axis alone, as compare --by")
    pw.add_argument("--sets", help="only these sets, comma-separated: the average they make is the one powered")
    pw.add_argument("--out", type=Path, default=Path("analysis_out"))
    inter = sub.add_parser("interaction", help="whether two studies find the same difference between two cells")
    inter.add_argument("first", type=Path)
    inter.add_argument("second", type=Path)
    inter.add_argument("--by", help="only pairs that differ in this axis alone, as compare --by")
    inter.add_argument("--sets", help="only these sets, comma-separated (and their average)")
    inter.add_argument("--out", type=Path, default=Path("analysis_out"))
    agree = sub.add_parser("agreement", help="whether loglik and generate rank the cells alike on one set")
    agree.add_argument("directories", nargs="+", type=Path)
    agree.add_argument("--set", required=True, dest="name", help="the evaluation set both methods scored: arc_e")
    agree.add_argument("--out", type=Path, default=Path("analysis_out"))
    found = sub.add_parser("search", help="a search's trials, best trial or Pareto front, and figures")
    found.add_argument("sweep_dir", type=Path)
    found.add_argument("--out", type=Path, default=None, help="default: SWEEP_DIR/analysis")
    found.add_argument("--storage", help="the study's RDB URL, when it is not SWEEP_DIR/optuna.db")
    found.add_argument("--study", help="the study's name, when the storage holds several")
    args = parser.parse_args(argv)
    if args.command == "search":
        try:
            written = write_search(args.sweep_dir, args.out or args.sweep_dir / "analysis", args.storage, args.study)
        except SearchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(written))
        return 0
    if args.command == "agreement":
        try:
            lines = agreement.write(args.directories, args.name, args.out)
        except agreement.AgreementError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0
    if args.command == "interaction":
        return interaction_command(args.first, args.second, args.out, args.by, args.sets)
    if args.command in ("compare", "power"):
        return pairs_command(args.command, args.directories, args.out, args.by, args.sets)
    if not args.directories and not args.wandb and not args.jobs:
        parser.error("give results directories, --wandb ENTITY/PROJECT or --jobs JOBS_CSV")
    written = tables(args.directories, args.out, args.wandb, args.jobs)
    print(json.dumps({"out": str(args.out), "jobs": written["jobs"], "statuses": written["statuses"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
