"""The statistics behind cells and comparisons, against references: the paired permutation test equals McNemar's
exact test where it can enumerate, Holm equals statsmodels', the bootstrap interval agrees with scipy's and with
Wilson's, and in simulation identical cells are called different about 5% of the time while a real margin is found."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap

from analysis import uncertainty
from analysis.uncertainty import Cell, compare, compare_average, holm, interval, question_scores, sign_flip_p
from llm_adapters.stats.intervals import wilson


def cell(rows, ids=None) -> Cell:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    return Cell(ids or [str(i) for i in range(rows.shape[1])], rows)


def test_the_paired_test_is_mcnemars_exact_test_where_it_enumerates():
    rng = np.random.default_rng(3)
    for _ in range(5):  # 13 questions: 8,192 sign patterns, fewer than the resamples, so scipy enumerates them
        a, b = rng.random(13) < 0.7, rng.random(13) < 0.4
        found = compare(cell(a), cell(b))
        wins, losses = int((a & ~b).sum()), int((b & ~a).sum())
        assert found.paired and found.p == pytest.approx(binomtest(wins, wins + losses).pvalue, abs=1e-12)
        assert found.difference == pytest.approx(100 * (a.mean() - b.mean()), abs=1e-4)


def test_the_paired_test_is_exact_at_any_size_and_with_seeds():
    """Exact where scipy enumerates (13 questions, three seeds against two: differences in sixths), and at 150
    questions a difference no Monte Carlo test of 9,999 resamples could resolve (p far below 1e-4) is McNemar's."""
    from scipy.stats import permutation_test

    rng = np.random.default_rng(5)
    a, b = (rng.random((3, 13)) < 0.7).astype(np.float32), (rng.random((2, 13)) < 0.4).astype(np.float32)
    theirs = permutation_test(
        (a.mean(axis=0), b.mean(axis=0)),
        lambda u, v, axis: np.mean(u, axis=axis) - np.mean(v, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
    ).pvalue
    assert compare(cell(a), cell(b)).p == pytest.approx(theirs, abs=1e-12)
    strong, weak = np.ones(150, dtype=bool), np.ones(150, dtype=bool)
    weak[:30] = False  # 30 questions lost, none won
    found = compare(cell(strong), cell(weak))
    assert found.p == pytest.approx(binomtest(30, 30).pvalue, rel=1e-9) and found.p < 1e-8
    assert holm([found.p] * 420)[0] < 0.05  # survives a study's worth of comparisons


def pair(n: int, a_wins: int, b_wins: int, rng: np.random.Generator) -> tuple[Cell, Cell]:
    """Two one-seed cells on n questions: A alone right on a_wins, B alone on b_wins, agreeing (at random) elsewhere."""
    a, b = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    a[:a_wins], b[a_wins : a_wins + b_wins] = True, True
    agree = rng.random(n) < 0.6
    a[a_wins + b_wins :] = b[a_wins + b_wins :] = agree[a_wins + b_wins :]
    order = rng.permutation(n)
    return cell(a[order]), cell(b[order])


def test_the_average_is_the_mean_of_the_sets_and_its_test_the_exact_one_where_the_sets_are_equal():
    """Two sets of 400 questions weigh each question alike, so the average's test is the exact sign-flip test of
    all 800 questions; its continuity-corrected normal form is within 3% of it (140 discordant questions). The
    difference is the mean of the two sets' differences; identical cells give 0 and p 1."""
    rng = np.random.default_rng(7)
    sets = [pair(400, 40, 22, rng), pair(400, 45, 33, rng)]
    found = compare_average(sets)
    exact = sign_flip_p(np.concatenate([(a.scores - b.scores)[0] for a, b in sets]))
    assert 0.001 < exact < 0.05 and found.p == pytest.approx(exact, rel=0.03)
    per_set = [compare(a, b).difference for a, b in sets]
    assert found.difference == pytest.approx(np.mean(per_set), abs=1e-4) == pytest.approx(100 * 30 / 800, abs=1e-4)
    assert found.low < found.difference < found.high and found.paired
    same = compare_average([(a, a) for a, _ in sets])
    assert same.difference == 0 and same.p == 1.0


def test_the_average_weighs_each_set_equally_as_a_sign_flip_simulation_does():
    """Sets of 100 and 1,000 questions: a 10-point lead on the small one counts as much as on the large one. The
    p-value equals a Monte Carlo sign-flip test of the set-weighted statistic (scipy, 20,000 resamples) within its
    simulation error; pooling the questions instead would give a different answer."""
    from scipy.stats import permutation_test

    rng = np.random.default_rng(9)
    sets = [pair(100, 15, 5, rng), pair(1000, 60, 70, rng)]
    d = [(a.scores - b.scores)[0].astype(np.float64) for a, b in sets]
    weights = np.concatenate([np.full(x.size, 1 / x.size) for x in d])
    theirs = permutation_test(
        (np.concatenate(d) * weights,),
        lambda x, axis: np.sum(x, axis=axis),
        permutation_type="samples",
        n_resamples=20_000,
        random_state=1,
    ).pvalue
    found = compare_average(sets)
    assert found.difference == pytest.approx((10.0 - 1.0) / 2, abs=1e-4)
    assert abs(found.p - theirs) < 4 * np.sqrt(theirs * (1 - theirs) / 20_000) + 0.005
    pooled = sign_flip_p(np.concatenate(d))
    assert abs(pooled - found.p) > 0.1  # the pooled test, each question alike, is another test


def test_holm_equals_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    pvalues = [0.01, 0.04, 0.03, 0.2, 0.001, 0.04]
    assert holm(pvalues) == pytest.approx(multitest.multipletests(pvalues, method="holm")[1].tolist())


def test_one_seed_interval_agrees_with_scipys_bootstrap_and_wilson():
    scores = (np.random.default_rng(0).random(400) < 0.35).astype(np.float32)
    ours = interval(cell(scores))
    theirs = bootstrap((scores,), np.mean, method="percentile", n_resamples=4000, random_state=0).confidence_interval
    assert ours == pytest.approx([100 * theirs.low, 100 * theirs.high], abs=0.6)  # Monte Carlo error of both
    assert ours == pytest.approx(wilson(int(scores.sum()), 400), abs=1.0)  # and close to the closed form at n 400


def test_seeds_widen_the_interval():
    """Three seeds that disagree (35%, 45%, 55% on the same 200 questions) give a wider interval than one seed's
    question sampling alone would: the seed spread is part of it."""
    rng = np.random.default_rng(1)
    seeds = np.stack([rng.random(200) < p for p in (0.35, 0.45, 0.55)]).astype(np.float32)
    low, high = interval(cell(seeds))
    single_low, single_high = interval(cell(seeds[1]))
    assert high - low > 1.3 * (single_high - single_low)


def test_cells_on_different_questions_are_compared_unpaired():
    found = compare(cell([1, 0, 1, 1], ["a", "b", "c", "d"]), cell([0, 0, 1, 0], ["e", "f", "g", "h"]))
    assert not found.paired and 0 <= found.p <= 1


def test_per_seed_scores_on_different_questions_make_no_cell():
    assert Cell.of([{"s/0": 1.0, "s/1": 0.0}, {"s/0": 1.0, "s/2": 0.0}]) is None
    assert Cell.of([{"s/0": 1.0}, {}]) is None  # a seed without predictions
    assert Cell.of([{"s/0": 1.0, "s/1": 0.0}, {"s/1": 1.0, "s/0": 1.0}]).scores.tolist() == [[1, 0], [1, 1]]


def test_gzipped_predictions_read_as_the_plain_file(tmp_path):
    import gzip

    rows = [{"id": f"arc_e/{i}", "correct": i % 2 == 0} for i in range(5)]
    text = "".join(f"{json.dumps(r)}\n" for r in rows)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "predictions.jsonl").write_text(text)
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "predictions.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    assert question_scores(tmp_path / "packed") == question_scores(tmp_path / "plain") != {}


def test_question_scores_read_predictions(tmp_path):
    (tmp_path / "predictions.jsonl").write_text('{"id": "arc_e/0", "correct": true}\n{"id": "arc_e/1", "correct": 0}\n')
    assert question_scores(tmp_path) == {"arc_e": {"arc_e/0": 1.0, "arc_e/1": 0.0}}
    assert question_scores(tmp_path / "none") == {}


def test_false_positives_near_alpha_and_a_real_margin_found_at_its_power(monkeypatch):
    """200 pairs of cells with the same true accuracy (40%, 100 questions each, one seed): rejected at α = 0.05 in
    5% of them up to the simulation's error (binomial SE 1.5 points: bound 1%-10%). 60 pairs whose true accuracies
    are 40% and 65%: found at least as often as the normal approximation's power says, less three of its
    simulation SEs (power = Φ(margin / SE - 1.96), SE = √((0.4·0.6 + 0.65·0.35) / 100): 0.95)."""
    from scipy.stats import norm

    monkeypatch.setattr(uncertainty, "REPLICATES", 200)
    monkeypatch.setattr(uncertainty, "PERMUTATIONS", 999)
    rng = np.random.default_rng(7)

    def rejected(better: float) -> bool:
        a, b = rng.random(100) < better, rng.random(100) < 0.4
        return compare(cell(a), cell(b), seed=int(rng.integers(1 << 30))).p < 0.05

    false_positives = np.mean([rejected(0.4) for _ in range(200)])
    assert 0.01 <= false_positives <= 0.10
    power = norm.cdf(0.25 / np.sqrt((0.4 * 0.6 + 0.65 * 0.35) / 100) - norm.ppf(0.975))
    found = np.mean([rejected(0.65) for _ in range(60)])
    assert power > 0.9 and found >= power - 3 * np.sqrt(power * (1 - power) / 60)
