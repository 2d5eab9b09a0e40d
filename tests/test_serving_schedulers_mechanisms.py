"""Past-Future's future peak and history, JITServe's length estimates and grouped order, goodput."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infragym.models.serving_schedulers import jitserve as jit
from infragym.models.serving_schedulers.length_predictor import QuantileLengthPredictor, prompt_features
from infragym.models.serving_schedulers.past_future import LengthHistory, admits, future_peak


def simulated_peak(held: np.ndarray, remaining: np.ndarray) -> float:
    """Step the batch token by token: every request grows by one token per step until done."""
    peak = float(held.sum())
    for step in range(1, int(remaining.max(initial=0)) + 1):
        alive = remaining >= step
        peak = max(peak, float((held + np.minimum(remaining, step))[alive].sum() + 0.0))
    return peak


def test_future_peak_worked_example() -> None:
    # sorted by remaining: (r=10, h=100), (r=5, h=50), (r=1, h=400):
    # i=1: 10 x 1 + 100 = 110; i=2: 5 x 2 + 150 = 160; i=3: 1 x 3 + 550 = 553
    assert future_peak(np.array([400, 100, 50]), np.array([1, 10, 5])) == 553.0
    assert future_peak(np.array([]), np.array([])) == 0.0
    assert admits(np.array([100.0]), np.array([10.0]), capacity_tokens=114.0)  # 110 <= 0.97 x 114
    assert not admits(np.array([100.0]), np.array([10.0]), capacity_tokens=113.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), min_size=1, max_size=12))
def test_future_peak_equals_the_token_by_token_simulation(batch: list[tuple[int, int]]) -> None:
    held = np.array([h for h, _ in batch], dtype=np.float64)
    remaining = np.array([r for _, r in batch], dtype=np.float64)
    assert future_peak(held, remaining) == pytest.approx(simulated_peak(held, remaining))


def test_history_window_keeps_the_last_lengths_and_samples_conditionally() -> None:
    history = LengthHistory(window=10, init=(5, 512))
    assert len(history) == 5 and np.all(history.lengths == 512)
    history.add(np.arange(1, 13) * 100)  # 12 new lengths: only the last 10 stay
    assert len(history) == 10
    np.testing.assert_array_equal(history.lengths, np.arange(3, 13) * 100)
    rng = np.random.default_rng(0)
    generated = np.full(2000, 950)
    remaining = history.sample_remaining(generated, np.full(2000, 10_000), rng)
    # totals above 950: 1000, 1100, 1200, uniformly
    assert set(np.unique(remaining + 950)) == {1000, 1100, 1200}
    assert abs(np.mean(remaining + 950) - 1100) < 10
    # nothing in the history above what was generated: 10% more; capped by max_new_tokens
    assert history.sample_remaining(np.array([5000]), np.array([10_000]), rng)[0] == 500
    assert history.sample_remaining(np.array([5000]), np.array([5100]), rng)[0] == 100


def test_length_predictor_is_conservative_and_refines_with_generated_tokens() -> None:
    rng = np.random.default_rng(0)
    prompt = rng.integers(10, 2000, 3000)
    output = np.maximum(1, (prompt / 4 * rng.lognormal(0, 0.5, prompt.size)).astype(np.int64))
    features = prompt_features(prompt, np.zeros(prompt.size))
    predictor = QuantileLengthPredictor(tau=0.9).fit(features[:2000], output[:2000])
    grid = predictor.quantile_grid(features[2000:])
    assert np.all(np.diff(grid, axis=1) >= 0)
    fresh = predictor.estimate_total(grid, np.zeros(1000))
    coverage = np.mean(output[2000:] <= fresh)
    assert 0.8 < coverage < 0.97  # a conservative (about 90%) quantile on held-out requests
    # once a request outlives its estimate, the refined one is above what it generated
    generated = fresh * 1.5
    refined = predictor.estimate_total(grid, generated)
    assert np.all(refined > generated)
    static = predictor.estimate_total(grid, generated, refine=False)
    np.testing.assert_array_equal(static, generated + 1)  # the static estimate is stuck at "almost done"
    # refinement uses the conditional distribution: requests that generated more expect more
    mid = predictor.estimate_total(grid, np.minimum(grid[:, 2], fresh - 1))
    assert np.all(mid >= np.minimum(grid[:, 2], fresh - 1) + 1)


def test_slack_and_grouped_order() -> None:
    kwargs = dict(
        now=10.0,
        slo_type=np.array([0, 0, 1]),
        arrival=np.array([9.0, 5.0, 0.0]),
        ttft_s=np.array([2.0, 2.0, 2.0]),
        tbt_s=np.array([0.1, 0.1, 0.1]),
        deadline_at=np.array([np.inf, np.inf, 30.0]),
        first_token=np.array([10.0, 6.0, 10.0]),
        generated=np.array([0.0, 20.0, 0.0]),
        remaining=np.array([100.0, 40.0, 200.0]),
        token_s=0.02,
        prefill_s=np.array([0.1, 0.1, 0.2]),
    )
    slack = jit.slack_seconds(**kwargs)
    # not started: 9 + 2 - 10 - 0.1; resumed stream: 6 + 0.1 x 60 - 10 - 40 x 0.02 - 0.1;
    # deadline: 30 - 10 - 0.2 - 200 x 0.02
    np.testing.assert_allclose(slack, [0.9, 1.1, 15.8])
    value = jit.marginal_goodput(np.array([100, 100, 100]), kwargs["generated"], kwargs["remaining"], 0.02)
    service = kwargs["prefill_s"] + kwargs["remaining"] * 0.02
    order = jit.grouped_margin_order(np.array([5.0, -1.0, 0.1]), value, service)
    assert order[-1] == 1  # the hopeless request is served last
    groups = jit.slack_group(np.array([-0.1, 0.0, 1.99, 2.0, 7.9, 8.0, 1e9]))
    np.testing.assert_array_equal(groups, [3, 0, 0, 1, 1, 2, 2])
    assert jit.prefill_budget_s(
        now=10.0, first_token=np.array([5.0]), generated=np.array([61.0]), tbt_s=np.array([0.1]), token_s=0.02
    ) == pytest.approx(1.1)  # 1 s ahead of a 0.1 s/token pace, plus one token's 0.1 s


def test_every_pair_of_sorted_positions_gives_the_same_peak() -> None:
    """The peak depends on the batch, not the order the requests are listed in."""
    held = np.array([10.0, 200.0, 35.0, 0.0])
    remaining = np.array([7.0, 1.0, 30.0, 12.0])
    peaks = {future_peak(held[list(p)], remaining[list(p)]) for p in itertools.permutations(range(4))}
    assert len(peaks) == 1
