"""The suite's goal checks, judged on the stored results and on doctored copies of them (cheap:
nothing is re-run).

    python -m pytest tests/test_bench_suite.py -q
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import report
import suite
from _common import Check, finish, load_result


def test_every_stored_result_meets_its_goals_or_names_its_open_issue() -> None:
    rows = suite.check_stored()
    assert {r.benchmark for r in rows} == {b.name for b in suite.BENCHMARKS}
    assert not [r for r in rows if r.failed], suite.format_rows([r for r in rows if r.failed])
    assert suite.main(["--check-only"]) == 0


def test_a_missed_goal_is_a_regression_and_says_what_was_measured(capsys: pytest.CaptureFixture) -> None:
    import train_wallclock

    result = {**load_result("train_wallclock"), "wall_s": 2 * train_wallclock.GOAL_WALL_S}
    checks = train_wallclock.check(result)
    assert [c.status for c in checks] == ["REGRESSED"]
    assert finish("train_wallclock", checks) == 1
    assert f"measured 360 s, goal <= {train_wallclock.GOAL_WALL_S} s" in capsys.readouterr().err


def test_one_bad_seed_fails_the_deoxys_goal() -> None:
    import deoxys_quality

    result = copy.deepcopy(load_result("deoxys_quality"))
    next(iter(result["per_seed"].values()))["deoxys/downtime_gap_closed"] = 0.5
    assert [c.met for c in deoxys_quality.check(result)] == [False, True, True]


def test_an_open_issue_goal_is_reported_not_a_regression() -> None:
    check = Check("lowest", "ridge", "cloudformer", False, open_issue=3)
    assert check.status == "not met (issue 3 open)" and not check.regressed
    assert finish("x", [check, Check("rate", "1", "reported", None)]) == 0


def test_a_missing_result_fails_the_suite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(suite, "load_result", lambda name: None)
    rows = suite.check_stored(["serving_fidelity"])
    assert len(rows) == 1 and rows[0].failed


def test_reported_measurements_do_not_fail() -> None:
    import serving_speed

    least = load_result("serving_speed_least_outstanding")
    assert [c.status for c in serving_speed.check(least)] == ["reported"]
    slow = {**load_result("serving_speed_round_robin"), "wall_s": 31.0}
    assert [c.status for c in serving_speed.check(slow)] == ["REGRESSED"]


def test_pages_start_with_a_title_and_link_only_to_each_other() -> None:
    import re

    pages = report.render_pages()
    assert set(pages) == {"results/index.md", *report.COMPONENT_PAGES}
    for text in pages.values():
        assert text.startswith("# ")
        for target in re.findall(r"\]\(([^)]+)\)", text):
            assert f"results/{target}" in pages, target
