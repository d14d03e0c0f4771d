"""The finance layer (gridbridge.reports): periods, sums, budgets, allocations, forecast and
placements, on ledger and decision rows written by hand so every expected number is known."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gridbridge.reports import (
    Allocation,
    Every,
    GroupBy,
    PeriodError,
    Window,
    cost_report,
    forecast,
    placements,
    placements_totals,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def row(i: int, end: str, cost: float, *, team: str = "vision", project: str = "p1",
        site: str = "hpc", tier: str = "hpc", od: float | None = None, lost: float = 0.0,
        hours: float = 1.0, outcome: str = "SUCCEEDED", start: str | None = None) -> dict:
    return {"attempt_id": f"j{i}.1", "job_id": f"j{i}", "user": "ada", "team": team,
            "project": project, "site": site, "tier": tier, "outcome": outcome,
            "start": ts(start) if start else ts(end) - 3600, "end": ts(end),
            "core_hours": hours, "gpu_hours": 0.0, "cost": cost,
            "on_demand_cost": cost if od is None else od, "lost_cost": lost}


LEDGER = [
    row(1, "2026-10-30T10:00:00", 0.1, od=0.3, team="vision"),
    row(2, "2026-10-31T23:59:59", 0.2, od=0.3, team="nlp", site="spot", tier="cloud",
        outcome="PREEMPTED", lost=0.05),
    row(3, "2026-11-01T00:00:00", 1.25, od=2.0, team="vision", hours=10.0),
    row(4, "2026-11-02T12:00:00", 2.5, od=2.5, team="nlp", hours=30.0),
    row(5, "2026-11-09T08:00:00", 4.0, od=8.0, team="vision", site="spot", tier="cloud",
        outcome="PREEMPTED", lost=1.0),
]


def test_periods_read_years_months_days_and_refuse_the_rest() -> None:
    nov = Window.period("2026-11")
    assert (nov.since, nov.until) == (ts("2026-11-01T00:00:00"), ts("2026-12-01T00:00:00"))
    assert Window.period("2026-12").until == ts("2027-01-01T00:00:00")
    assert Window.period("2026-11-27").until - Window.period("2026-11-27").since == 86400
    assert Window.period("2026").until == ts("2027-01-01T00:00:00")
    for bad in ("2026-13", "11/2026", "last month", "2026-11-31"):
        with pytest.raises(PeriodError, match="--period"):
            Window.period(bad)
    with pytest.raises(PeriodError, match="--until"):
        Window.between("2026-11-05", "2026-11-01", now=ts("2026-11-20T00:00:00"))


def test_an_attempt_is_charged_to_the_period_it_ended_in_and_rows_sum_exactly() -> None:
    rows = cost_report(LEDGER, GroupBy.TEAM, Window.period("2026-11"))
    by = {r["team"]: r for r in rows}
    assert set(by) == {"vision", "nlp", "TOTAL"}
    assert rows[-1]["team"] == "TOTAL"
    assert by["vision"]["cost"] == Decimal("5.25")  # j3 + j5; j1 ended in October
    assert by["nlp"]["cost"] == Decimal("2.5")  # j4; j2 ended 1 s before November
    assert by["vision"]["savings"] == Decimal("4.75")  # (2 + 8) - (1.25 + 4)
    assert by["vision"]["lost_cost"] == Decimal("1")
    assert (by["vision"]["attempts"], by["vision"]["preempted"]) == (2, 1)
    total = by["TOTAL"]
    for col in ("cost", "on_demand_cost", "savings", "lost_cost", "core_hours"):
        assert total[col] == by["vision"][col] + by["nlp"][col], col
    assert total["currency"] == "USD"


def test_money_is_decimal_text_with_no_float_artefacts() -> None:
    ledger = [row(i, f"2026-11-0{i}T00:00:00", c) for i, c in ((1, 0.1), (2, 0.2))]
    [line, total] = cost_report(ledger, GroupBy.SITE, Window.period("2026-11"),
                                currency="EUR")
    assert str(0.1 + 0.2) == "0.30000000000000004"  # the float sum has an artefact ...
    assert str(total["cost"]) == "0.300000"  # ... the report's sum does not
    assert total["currency"] == "EUR"
    buf = io.StringIO()
    csv.writer(buf).writerow([str(line["cost"])])
    assert buf.getvalue().strip() == "0.300000"


def test_every_cuts_the_period_into_calendar_pieces_and_the_total_covers_all() -> None:
    rows = cost_report(LEDGER, GroupBy.SITE, Window.between("2026-10-26", "2026-11-16",
                                                            now=0.0), every=Every.WEEK)
    pieces = [(r["period"], r["site"], r["cost"]) for r in rows[:-1]]
    # W44 is Oct 26 to Nov 1 (j1 0.1 + j3 1.25 on hpc, j2 0.2 on spot), W45 j4, W46 j5
    assert pieces == [
        ("2026-W44", "hpc", Decimal("1.35")), ("2026-W44", "spot", Decimal("0.2")),
        ("2026-W45", "hpc", Decimal("2.5")), ("2026-W46", "spot", Decimal("4")),
    ]
    assert rows[-1]["cost"] == sum(p[2] for p in pieces)
    days = Window.period("2026-11").cut(Every.DAY)
    assert len(days) == 30 and days[0].label == "2026-11-01" and days[-1].label == "2026-11-30"
    assert [w.label for w in Window.between("2026-10-15", "2026-12-02", 0).cut(Every.MONTH)] == [
        "2026-10", "2026-11", "2026-12"]


def test_a_past_period_gives_the_same_numbers_after_new_attempts_end() -> None:
    october = Window.period("2026-10")
    before = cost_report(LEDGER, GroupBy.TEAM, october, budgets={"vision": 1.0})
    later = [*LEDGER,
             row(6, "2026-11-20T00:00:00", 9.0, start="2026-10-20T00:00:00"),  # began in Oct
             row(7, "2026-11-21T00:00:00", 3.0, team="nlp")]
    assert cost_report(later, GroupBy.TEAM, october, budgets={"vision": 1.0}) == before


def test_budgets_are_monthly_and_budget_left_is_what_remained_when_the_piece_ended() -> None:
    rows = cost_report(LEDGER, GroupBy.TEAM, Window.period("2026-11"), every=Every.WEEK,
                       budgets={"vision": 10.0})
    vision = [r for r in rows if r["team"] == "vision"]
    # W44 holds only Nov 1 (j3, 1.25); W46 holds j5 (4.0): left 10 - 1.25, then 10 - 5.25
    assert [(r["period"], r["budget"], r["budget_left"]) for r in vision] == [
        ("2026-W44", Decimal("10"), Decimal("8.75")),
        ("2026-W46", Decimal("10"), Decimal("4.75")),
    ]
    nlp = next(r for r in rows if r["team"] == "nlp")
    assert (nlp["budget"], nlp["budget_left"]) == (None, None)  # no budget set
    two_months = cost_report(LEDGER, GroupBy.TEAM, Window.between("2026-10-01", "2026-12-01",
                                                                  0), budgets={"vision": 10.0})
    vision_total = next(r for r in two_months if r["team"] == "vision")
    assert vision_total["budget"] == Decimal("20")  # two months of budget
    assert vision_total["budget_left"] == Decimal("20") - Decimal("5.35")


def test_allocation_burn_down_counts_core_hours_used_on_the_site() -> None:
    allocs = [Allocation(site="hpc", core_hours=100.0)]
    rows = cost_report(LEDGER, GroupBy.SITE, Window.period("2026-11"), allocations=allocs)
    hpc = next(r for r in rows if r["site"] == "hpc")
    assert hpc["allocation_core_hours"] == Decimal("100")
    assert hpc["allocation_used"] == Decimal("40")  # j3 10 + j4 30 (j1 was in October)
    assert hpc["allocation_left"] == Decimal("60")
    assert "allocation_used" not in next(r for r in rows if r["site"] == "spot")
    total = cost_report(LEDGER, GroupBy.SITE, Window.period("2026-11"),
                        allocations=[Allocation(site="hpc", core_hours=100.0, every="total")])
    assert next(r for r in total if r["site"] == "hpc")["allocation_used"] == Decimal("41")


def test_a_partitions_allocation_counts_only_the_work_run_in_that_partition() -> None:
    ledger = [{**row(1, "2026-11-02T00:00:00", 0.0, hours=8.0), "offer_key": "gpu"},
              {**row(2, "2026-11-03T00:00:00", 0.0, hours=5.0), "offer_key": "cpu"},
              {**row(3, "2026-11-04T00:00:00", 0.0, hours=1.0), "offer_key": "gpu"}]
    allocs = [Allocation(site="hpc", core_hours=10.0, every="total", offer_key="gpu"),
              Allocation(site="hpc", core_hours=3.0, every="total", offer_key="debug")]
    [hpc, _] = cost_report(ledger, GroupBy.SITE, Window.period("2026-11"), allocations=allocs)
    assert (hpc["allocation_core_hours"], hpc["allocation_used"], hpc["allocation_left"]) == (
        Decimal("13"), Decimal("9"), Decimal("4"))  # the cpu partition's 5 hours are not in it


def test_job_rows_carry_the_jobs_name_and_state() -> None:
    rows = cost_report(LEDGER, GroupBy.JOB, Window.period("2026-11"),
                       jobs={"j3": ("train", "SUCCEEDED"), "j5": ("sweep", "RUNNING")})
    by = {r["job_id"]: r for r in rows}
    assert (by["j5"]["name"], by["j5"]["state"]) == ("sweep", "RUNNING")
    assert (by["j4"]["name"], by["j4"]["state"]) == ("", "")  # not in the map given
    assert rows[0]["job_id"] == "j5"  # dearest first


def test_forecast_runs_the_recent_rate_to_month_end_and_says_when_the_budget_runs_out() -> None:
    now = ts("2026-11-11T00:00:00")  # 20 days left in November
    ledger = [
        row(1, "2026-11-02T00:00:00", 10.0, team="vision"),  # this month, before the window
        row(2, "2026-11-05T00:00:00", 7.0, team="vision"),  # within the last 7 days
        row(3, "2026-11-10T00:00:00", 7.0, team="vision"),
        row(4, "2026-10-30T00:00:00", 99.0, team="vision"),  # last month: not spent now
    ]
    rows = forecast(ledger, now, teams={"vision": 50.0, "idle": 5.0}, projects={})
    vision = next(r for r in rows if r["budget_of"] == "team:vision")
    assert vision["spent_to_date"] == Decimal("24")
    assert vision["run_rate_per_day"] == Decimal("2")  # 14 over 7 days
    assert vision["forecast_month_end"] == Decimal("64")  # 24 + 2 x 20
    assert vision["forecast_left"] == Decimal("-14")
    assert vision["runs_out"] == "2026-11-24T00:00:00Z"  # 26 left at 2 a day: 13 days
    idle = next(r for r in rows if r["budget_of"] == "team:idle")
    assert (idle["spent_to_date"], idle["runs_out"]) == (Decimal("0"), "-")
    project = next(r for r in rows if r["budget_of"] == "project:p1")
    assert project["budget"] is None and project["forecast_month_end"] == Decimal("64")
    over = forecast(ledger, now, teams={"vision": 20.0}, projects={})
    assert next(r for r in over if r["budget_of"] == "team:vision")["runs_out"] == "exhausted"


def test_placements_name_the_runner_up_and_what_placement_saved() -> None:
    at = ts("2026-11-03T00:00:00")

    def cand(job: str, site: str, chosen: bool, cost: float | None, feasible: bool = True,
             when: float = at) -> dict:
        return {"at": when, "job_id": job, "attempt": 1, "site": site, "offer_key": None,
                "chosen": chosen, "feasible": feasible, "expected_cost": cost,
                "on_demand_cost": 3.0}

    decisions = [
        cand("a", "spot", True, 1.0), cand("a", "hpc", False, 1.5),
        cand("a", "edge", False, 0.5, feasible=False),  # cheaper but could not run it
        cand("b", "hpc", True, 2.0), cand("b", "gone", False, None, feasible=False),
        cand("c", "spot", False, 1.0, when=at + 1),  # waited: nothing chosen
        cand("d", "spot", True, 1.0, when=ts("2026-12-01T00:00:00")),  # outside the period
    ]
    rows = placements(decisions, Window.period("2026-11"), jobs={"a": ("train", "RUNNING")},
                      actual={"a.1": 1.2})
    assert [(r["job_id"], r["site"], r["runner_up"]) for r in rows] == [
        ("a", "spot", "hpc"), ("b", "hpc", "")]
    a, b = rows
    assert (a["name"], a["vs_runner_up"], a["vs_on_demand"]) == ("train", Decimal("0.5"),
                                                                 Decimal("2"))
    assert a["actual_cost"] == Decimal("1.2") and b["actual_cost"] is None
    assert b["vs_runner_up"] == Decimal("0") and b["runner_up_cost"] is None
    totals = placements_totals(rows)
    assert totals == {"placements": 2, "with_runner_up": 1, "expected_cost": Decimal("3"),
                      "saved_vs_runner_up": Decimal("0.5"), "saved_vs_on_demand": Decimal("3"),
                      "actual_cost": Decimal("1.2")}


HOSTILE = ["<script>alert(1)</script>", "=HYPERLINK(\"http://x\",\"y\")", "a\"b'c;d\nnewline",
           "../../etc/passwd", "+1-2", "@SUM(A1)"]


def test_hostile_names_stay_text_in_the_html_and_the_csv() -> None:
    from gridbridge.report_html import ReportInputs, render_html
    from gridbridge.reports import csv_text

    ledger = [row(i, f"2026-11-0{i + 1}T00:00:00", 1.0 + i, team=name, project=name,
                  site=name, outcome="PREEMPTED", lost=0.5)
              for i, name in enumerate(HOSTILE)]
    jobs = {f"j{i}": (name, "RUNNING") for i, name in enumerate(HOSTILE)}
    page = render_html(ReportInputs(
        ledger=ledger, window=Window.period("2026-11"), now=ts("2026-11-20T00:00:00"),
        jobs=jobs, team_budgets={HOSTILE[0]: 10.0}))
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&quot;b&#x27;c;d" in page
    rows = cost_report(ledger, GroupBy.TEAM, Window.period("2026-11"))
    text = csv_text(["team", "cost", "savings"], rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    teams = [r["team"] for r in parsed[:-1]]
    assert sorted(teams) == sorted(
        "'" + n if n[0] in "=+-@" else n for n in HOSTILE)  # formulas kept as text
    assert {r["cost"] for r in parsed} >= {"1.000000", "6.000000"}  # numbers untouched
    negative = csv_text(["team", "savings"], [{"team": "x", "savings": Decimal("-1.5")}])
    assert negative.splitlines()[1] == "x,-1.5"


def test_the_html_report_shows_cents_where_the_amounts_allow() -> None:
    """Finance reads cents: a column of dollar amounts is shown to the cent, a headline of
    nothing lost reads 0.00, and only a column of sub-cent amounts keeps its six places (the
    CSV keeps every digit)."""
    from gridbridge.report_html import ReportInputs, render_html

    ledger = [row(0, "2026-11-02T00:00:00", 83.2743, team="vision"),
              row(1, "2026-11-03T00:00:00", 12.5, team="nlp")]
    page = render_html(ReportInputs(ledger=ledger, window=Window.period("2026-11"),
                                    now=ts("2026-11-20T00:00:00"), jobs={}))
    assert ">83.27<" in page and "83.274300" not in page
    assert "0.000000" not in page
    assert '<div class="v" data-tile="lost to preemption">0.00 USD</div>' in page


def test_a_moved_attempt_is_counted_as_moved_not_preempted() -> None:
    """A move is gridbridge's own decision (a job sent where it is cheaper or safe): finance
    sees it apart from the preemptions a site imposed, with the work it cost in lost_cost."""
    ledger = [row(0, "2026-11-02T00:00:00", 1.0, team="vision", outcome="MOVED", lost=0.25),
              row(1, "2026-11-03T00:00:00", 2.0, team="vision", outcome="PREEMPTED", lost=0.5),
              row(2, "2026-11-04T00:00:00", 3.0, team="vision")]
    [vision, total] = cost_report(ledger, GroupBy.TEAM, Window.period("2026-11"))
    assert (vision["attempts"], vision["preempted"], vision["moved"]) == (3, 1, 1)
    assert vision["lost_cost"] == Decimal("0.75") and total["moved"] == 1


def test_shown_amounts_round_half_to_even_as_the_books_do() -> None:
    """A table shows the CSV's exact amount rounded the books' way (half to even), never a
    float's binary neighbour: 0.000105 core-hours is 0.00010, $1,234.565 is $1,234.56 (the
    HTML report's test met 0.000105 shown as 0.00011 when a run's amounts happened to land
    on a half)."""
    from decimal import Decimal

    from gridbridge.reports import for_display

    [row] = for_display([{"allocation_used": 0.000105, "cost": Decimal("1234.565"),
                          "savings": 0.0000125, "core_hours": 2.0005}])
    assert row == {"allocation_used": "0.00010", "cost": "$1,234.56", "savings": "$0.000012",
                   "core_hours": "2.000"}
