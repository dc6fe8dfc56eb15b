"""The demo world with history (issue 16): its timeline, the scripted notice behaviour, the
hosters' abuse webhooks on the synthetic web, and the checks of removals and flows."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from libra.demo.checks import (
    check_coverage,
    check_flows,
    check_removals,
    check_shifts,
    flow_truth,
    images_by_hoster,
)
from libra.demo.compare import expected_from_truth
from libra.demo.history import (
    HOTSPOT,
    HOTSPOT_PERIOD,
    PERIODS,
    History,
    day_periods,
)
from libra.demo.lists import node_list_families
from libra.demo.live import LiveWorld, webhook_host
from libra.demo.noticesim import NoticeSimulation
from libra.demo.policy import REMOVES_AFTER, policy_text
from libra.demo.web import SyntheticWeb
from node.notices import xarf

SECRET = b"demo-webhook-secret"


@pytest.fixture(scope="module")
def sim(history: History) -> NoticeSimulation:
    return NoticeSimulation(history).run(until=history.periods - 1)


def test_six_whole_days_before_today() -> None:
    days = day_periods(datetime(2026, 12, 4, 17, 30, tzinfo=UTC))
    assert len(days) == PERIODS >= 6
    assert days[0][0] == datetime(2026, 11, 28, tzinfo=UTC)
    assert days[-1][1] == datetime(2026, 12, 4, tzinfo=UTC)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(days))


def test_material_appears_over_time_and_the_hotspot_emerges(
    history: History, sim: NoticeSimulation
) -> None:
    assert set(history.appear.values()) >= {1, 2, HOTSPOT_PERIOD}
    at_hotspot = [len(sim.items(day).get(HOTSPOT.key, set())) for day in range(PERIODS)]
    assert at_hotspot[:HOTSPOT_PERIOD] == [0] * HOTSPOT_PERIOD
    assert at_hotspot[HOTSPOT_PERIOD] >= 5
    assert HOTSPOT.key in {h.key for h in history.world.hosters}
    # Every node crawls the hotspot from the start (its benign pages are up all along).
    for plan in history.world.nodes:
        assert {s.host for s in history.world.sites if s.hoster == HOTSPOT.key} <= set(plan.seeds)


def test_hosters_react_as_scripted(sim: NoticeSimulation) -> None:
    by = sim.by_hoster
    # Removes after the first notice: every removal is seen at the next day's re-check.
    assert by["hoster-a"].removals and {
        f.seen_day - f.first_day for f in by["hoster-a"].removals
    } == {1}
    # After the third notice (sooner when several nodes notice the same URL).
    assert max(f.seen_day - f.first_day for f in by["hoster-b"].removals) == 3
    # Never: three notices, then escalated.
    for key in ("hoster-d", "hoster-f"):
        assert by[key].removals == [] and by[key].escalated >= 1
    # No abuse contact (the unknown hoster): nothing is ever sent to it.
    assert "hoster-g" not in REMOVES_AFTER and by.get("hoster-g") is None
    assert policy_text("hoster-g") == "no contact" and policy_text("hoster-d") == "never"


def test_removed_material_reappears_elsewhere(history: History, sim: NoticeSimulation) -> None:
    by_country = flow_truth(sim, history.world, "country", history.periods)
    by_hoster = flow_truth(sim, history.world, "hoster", history.periods)
    country_flows = {k: v for step in by_country for k, v in step.flows.items()}
    assert country_flows, "some removed items turn up in another country"
    assert all(source != target for source, target in country_flows)
    assert sum(len(step.flows) for step in by_hoster) >= len(by_country[0].flows)
    # A removed item is gone from its hoster: removed figures are positive somewhere.
    assert any(figures[2] > 0 for step in by_hoster for figures in step.places.values())


def _signed(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    return {
        xarf.TIMESTAMP_HEADER.lower(): str(stamp),
        xarf.SIGNATURE_HEADER.lower(): xarf.sign_webhook(SECRET, body, stamp),
    }


def test_live_world_serves_the_epoch_and_desks_remove_what_they_are_told(
    history: History,
) -> None:
    live = LiveWorld(history, SECRET)
    world = history.world
    late = next(k for k, period in history.appear.items() if period == HOTSPOT_PERIOD)
    assert live.respond(*late).status == 404  # not online yet
    live.set_epoch(HOTSPOT_PERIOD)
    assert live.respond(*late).status == 200

    key = next(
        (p.site, p.url_path)
        for p in world.placements
        if p.base_id is not None
        and world.hoster_of(p.site).key == "hoster-c"
        and history.online((p.site, p.url_path), 0)
    )
    hook = webhook_host("hoster-c")

    def notice(url: str, round_: int) -> bytes:
        return json.dumps({"round": round_, "reports": [{"url": url}]}).encode()

    body = notice(f"http://{key[0]}:8080{key[1]}", 1)
    # A forged notice is refused and changes nothing.
    assert live.webhook(hook, "/xarf", {xarf.TIMESTAMP_HEADER.lower(): "1"}, body) == 401
    # hoster-c removes what a notice names when it comes the second time.
    assert live.webhook(hook, "/xarf", _signed(body), body) == 200
    assert live.webhook(hook, "/xarf", _signed(body), body) == 200  # another round 1
    assert live.respond(*key).status == 200
    again = notice(f"http://{key[0]}:8080{key[1]}", 2)
    assert live.webhook(hook, "/xarf", _signed(again), again) == 200
    assert live.respond(*key).status == 404 and live.removed[key] == HOTSPOT_PERIOD
    # A desk acts on its own files only.
    other = next(
        (p.site, p.url_path) for p in world.placements if world.hoster_of(p.site).key == "hoster-a"
    )
    foreign = notice(f"http://{other[0]}{other[1]}", 3)
    assert live.webhook(hook, "/xarf", _signed(foreign), foreign) == 200
    assert other not in live.removed
    assert live.webhook(webhook_host("hoster-g"), "/xarf", _signed(body), body) == 404


def test_webhooks_are_served_on_the_hosters_addresses(history: History) -> None:
    live = LiveWorld(history, SECRET)
    with SyntheticWeb(history.world, live=live) as web:
        lab = web.lab_network()
        assert lab.hosts[webhook_host("hoster-a")] == history.world.hoster("hoster-a").ip
        body = b'{"round": 1, "reports": []}'
        answer = httpx.post(
            f"http://{lab.hosts[webhook_host('hoster-a')]}:{web.port}/xarf",
            content=body,
            headers={"Host": webhook_host("hoster-a"), **_signed(body)},
            trust_env=False,
        )
        assert answer.status_code == 200 and live.notices["hoster-a"] == 1


def _api_flows(
    sim: NoticeSimulation, history: History, by: str, keys: list[tuple[str, str]]
) -> dict[str, Any]:
    """What a correct coordinator answers, built from the truth."""

    def place(p: tuple[object, ...]) -> dict[str, object]:
        if by == "hoster":
            return {"country": p[0], "asn": p[1], "hoster": p[2]}
        return {"country": p[0]}

    def e(n: int) -> dict[str, object]:
        return {"estimate": n, "lower": n, "upper": n, "exact": True}

    steps = []
    for step in flow_truth(sim, history.world, by, history.periods):
        steps.append(
            {
                "from": {"start": keys[step.day][0], "end": keys[step.day][1]},
                "to": {"start": keys[step.day + 1][0], "end": keys[step.day + 1][1]},
                "places": [
                    {
                        "place": place(p),
                        **{
                            n: e(v)
                            for n, v in zip(("before", "after", "removed", "new"), f, strict=True)
                        },
                    }
                    for p, f in step.places.items()
                ],
                "flows": [
                    {"source": place(s), "target": place(t), "items": e(n)}
                    for (s, t), n in step.flows.items()
                ],
            }
        )
    return {"steps": steps, "skipped": []}


def test_flow_check_agrees_with_the_truth_and_catches_a_change(
    history: History, sim: NoticeSimulation
) -> None:
    keys = [(f"2026-11-{d:02d}T00:00:00Z", f"2026-11-{d + 1:02d}T00:00:00Z") for d in range(1, 8)]
    for by in ("hoster", "country"):
        answer = _api_flows(sim, history, by, keys)
        assert check_flows(answer, sim, history, by, keys).agrees
        tampered = json.loads(json.dumps(answer))
        flows = [f for s in tampered["steps"] for f in s["flows"]]
        flows[0]["items"]["estimate"] += 1
        flows[0]["items"]["upper"] += 1
        assert not check_flows(tampered, sim, history, by, keys).agrees
        missing = json.loads(json.dumps(answer))
        next(s for s in missing["steps"] if s["flows"])["flows"].pop()
        assert not check_flows(missing, sim, history, by, keys).agrees
    assert not check_flows(None, sim, history, "hoster", keys).agrees


def test_removal_check_allows_only_the_stated_tolerance(
    history: History, sim: NoticeSimulation
) -> None:
    day = 86_400 + 900
    notice_at = [1_700_000_000 + i * day for i in range(PERIODS)]
    policies = {h.key: policy_text(h.key) for h in history.world.hosters}
    rows: list[dict[str, Any]] = []
    for key, stats in sim.by_hoster.items():
        country, name, asn = history.world.hoster(key).attribution()
        times = sorted(notice_at[f.seen_day] - notice_at[f.first_day] for f in stats.removals)
        rows.append(
            {
                "country": country,
                "asn": asn,
                "hoster": name,
                "notices_sent": stats.notices_sent,
                "urls_noticed": stats.urls_noticed,
                "removed": len(times),
                "median_seconds": times[len(times) // 2] + 20 if times else None,
                "p90_seconds": times[-1] if times else None,
            }
        )
    checks = check_removals(sim, history.world, policies, rows, notice_at, tolerance=30)
    assert checks and all(c.agrees for c in checks)
    assert {c.hoster for c in checks} >= {"Hoster A Ltd", "Hoster D Inc"}
    late = [dict(r) for r in rows]
    timed = next(r for r in late if r["median_seconds"])
    timed["median_seconds"] += 3600  # an hour off: outside the tolerance
    assert not all(
        c.agrees for c in check_removals(sim, history.world, policies, late, notice_at, 30)
    )
    fewer = [dict(r) for r in rows]
    fewer[0]["notices_sent"] -= 1
    assert not all(
        c.agrees for c in check_removals(sim, history.world, policies, fewer, notice_at, 30)
    )


def test_trend_check_compares_the_waterbed_view_with_each_periods_truth(
    history: History, sim: NoticeSimulation
) -> None:
    families = node_list_families(history.world)
    truth = [
        expected_from_truth(history.world.tally(sim.matches[d]), families) for d in range(PERIODS)
    ]

    def shifts(day: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for section in ("by_country", "by_hoster"):
            rows: dict[tuple[Any, ...], dict[str, Any]] = {}
            for side, picture in (("before", truth[day]), ("after", truth[day + 1])):
                for r in picture[section]:
                    key = (r["country"], r.get("asn"), r.get("hoster"))
                    row = rows.setdefault(key, {"country": r["country"]})
                    if section == "by_hoster":
                        row.update(asn=r["asn"], hoster=r["hoster"])
                    row[f"matches_{side}"] = r["matches"]
            out[section] = list(rows.values())
        return out

    answers = [shifts(d) for d in range(PERIODS - 1)]
    good = check_shifts(answers, truth)
    assert good.agrees and good.rows > 10
    answers[2]["by_hoster"][0]["matches_after"] = 99
    bad = check_shifts(answers, truth)
    assert len(bad.differences) == 1 and "2->3 by_hoster" in bad.differences[0]


def test_coverage_check_counts_what_the_nodes_hash(history: History, sim: NoticeSimulation) -> None:
    families = node_list_families(history.world)
    truth = [
        expected_from_truth(history.world.tally(sim.matches[d]), families) for d in range(PERIODS)
    ]
    answers: list[dict[str, Any]] = []
    for day in range(PERIODS):
        images = images_by_hoster(sim, day)
        matches = {
            (r["country"], r["asn"], r["hoster"]): r["matches"] for r in truth[day]["by_hoster"]
        }
        rows = [
            {
                "country": p[0],
                "asn": p[1],
                "hoster": p[2],
                "images_hashed": n,
                "matches": matches.get(p, 0),
                "prevalence": {
                    "per_10k": round(matches.get(p, 0) / n * 10_000, 4),
                    "lower": 0.0,
                    "upper": 1.0,
                },
            }
            for p, n in images.items()
        ]
        answers.append({"hosters": rows, "totals": {"images_hashed": sum(images.values())}})
    # Removed images are no longer hashed; the hotspot's pages are crawled from the start.
    assert sum(images_by_hoster(sim, 0).values()) > 100
    assert any(p[2] == HOTSPOT.name for p in images_by_hoster(sim, 0))
    good = check_coverage(answers, sim, truth)
    assert good.agrees and good.rows >= 8 * PERIODS and good.last
    answers[1]["hosters"][0]["images_hashed"] += 1
    assert not check_coverage(answers, sim, truth).agrees
