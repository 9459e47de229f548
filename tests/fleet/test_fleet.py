"""Motion traces, the fleet generator and the fleet simulator (the scaler's own rules on
simulated time). Traces of the real clips are made here, at test time, from ../shared/data."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import pytest

from tripwire.app.cli import main
from tripwire.app.trace_record import camera_config, record_trace
from tripwire.fleet.bench import POLICIES, policy_variant, run_policy
from tripwire.fleet.generate import FleetShape, generate_fleet
from tripwire.fleet.simulate import SimOptions, simulate_site
from tripwire.fleet.trace import CameraTrace, Event, Trace, TraceError, read_trace, write_trace
from tripwire.meters.power_profile import load_profile

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PEOPLE = DATA / "video_street_crossing_people1" / "people1.mp4"
H200 = load_profile("h200")


def one_site(*events: tuple[float, float]) -> list[CameraTrace]:
    return [CameraTrace("cam-1", "s", [Event(a, b, round((b - a) * 5)) for a, b in events])]


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_trace_round_trip(tmp_path: Path, name: str) -> None:
    trace = Trace(600.0, one_site((10.0, 20.5), (300.0, 301.0)), 5.0, "hand")
    write_trace(trace, tmp_path / name)
    again = read_trace(tmp_path / name)
    assert again.cameras[0].events == trace.cameras[0].events
    assert (again.duration_s, again.publish_fps, again.source) == (600.0, 5.0, "hand")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"schema": "other"}'], ":1: the first line must be a header"),
        (['{"schema": "tripwire.trace/1", "duration_s": "a day"}'], "duration_s must be a number"),
        (
            [
                '{"schema": "tripwire.trace/1", "duration_s": 60}',
                '{"camera": "c", "events": [[1]]}',
            ],
            ":2: event [1] is not [open_s, close_s, frames]",
        ),
        (
            [
                '{"schema": "tripwire.trace/1", "duration_s": 60}',
                '{"camera": "c", "events": [[1, 9, 3], [5, 7, 1]]}',
            ],
            "camera c event 1 [5, 7, 1]: opens before the previous event closed",
        ),
        (
            [
                '{"schema": "tripwire.trace/1", "duration_s": 60}',
                '{"camera": "c", "events": [[1, 90, 3]]}',
            ],
            "needs 0 <= open < close <= duration_s (60)",
        ),
        (["not json"], ":1: not JSON"),
    ],
)
def test_bad_traces_name_the_line_and_reason(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_truncated_gzip_trace_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"schema": "tripwire.trace/1", "duration_s": 9}\n')[:20])
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(path)


def test_generator_is_seeded_diurnal_varied_and_bursty() -> None:
    shape = FleetShape(cameras=200, hours=24, storms_per_day=0, peak_spread_h=1.0)
    fleet = generate_fleet(shape)
    assert generate_fleet(shape).cameras[7].events == fleet.cameras[7].events, "seeded"
    opens = [e.open_s / 3600 for c in fleet.cameras for e in c.events]
    day = sum(1 for h in opens if 11 <= h < 17)
    night = sum(1 for h in opens if h < 3 or h >= 23)
    assert day > 3 * night, (day, night)
    counts = sorted(len(c.events) for c in fleet.cameras)
    assert counts[-20] > 4 * counts[20], "per-camera variety: busy and quiet cameras"
    assert len(fleet.sites()) == 20
    # one storm over (at least) a block of sites: its cameras see more events meanwhile
    stormy = generate_fleet(dataclasses.replace(shape, storms_per_day=3.0, seed=4))
    calm = generate_fleet(dataclasses.replace(shape, storms_per_day=0.0, seed=4))
    assert stormy.events > calm.events


def test_simulator_counts_cold_starts_by_the_cooldown_on_the_poll_grid() -> None:
    policy = policy_variant("fixed-60", "h200")  # cooldown 60 s, polls every 5 s
    options = SimOptions(cold_start_s=8.0, first_result_s=0.1, in_flight_s=1.0, stop_s=1.0)
    # gap 30 s: still warm; gap 200 s: the replica went ~60-65 s after the last active poll
    cameras = one_site((10.0, 20.0), (50.0, 60.0), (260.0, 270.0))
    site = simulate_site("s", cameras, 600.0, policy, H200, options, seed=1)
    assert site.starts == 2 and site.cold_events == 2
    assert sorted(site.latencies) == pytest.approx([0.1, 8.1, 8.1])
    # held: 10 -> the first poll after (last active poll 55) + 60 s = 120, + 1 s stop; and
    # 260 -> the first poll after 265 + 60 = 330, + 1 s
    assert site.held_s == pytest.approx((121 - 10) + (331 - 260))
    assert site.energy_j == H200.split_j(600.0, site.held_s, site.frames, 2)
    keda_default = simulate_site(
        "s", cameras, 600.0, policy_variant("fixed-300", "h200"), H200, options, seed=1
    )
    assert keda_default.starts == 1 and keda_default.held_s > site.held_s


def test_fast_forward_decides_exactly_as_every_poll() -> None:
    fleet = generate_fleet(FleetShape(cameras=30, hours=6, site_size=5, seed=3))
    for name in POLICIES:
        fast = run_policy(fleet, name, H200, SimOptions(), hours=6)
        slow = run_policy(fleet, name, H200, SimOptions(fast_forward=False), hours=6)
        for a, b in zip(fast.sites, slow.sites, strict=True):
            assert (a.starts, a.prewarms, a.cold_events, a.latencies) == (
                b.starts,
                b.prewarms,
                b.cold_events,
                b.latencies,
            ), name
            assert a.held_s == pytest.approx(b.held_s) and a.keep_alive == b.keep_alive
        assert sum(s.decisions for s in fast.sites) < sum(s.decisions for s in slow.sites)


def test_bench_fleet_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fleet", "--cameras", "20", "--hours", "3", "--out", "/dev/null/x"]) == 2
    assert "/dev/null/x" in capsys.readouterr().err
    assert main(["bench", "fleet", "--cameras", "20", "--hours", "3"]) == 0
    out = capsys.readouterr().out
    for name in POLICIES:
        assert f"| 20 | {name} |" in out
    assert "camera-hours per second" in out


@pytest.mark.skipif(not PEOPLE.is_file(), reason=f"{PEOPLE} absent (../shared/data not here)")
def test_record_a_trace_from_a_real_clip(tmp_path: Path) -> None:
    trace = record_trace(str(PEOPLE), camera_config("street"), loops=2)
    events = trace.cameras[0].events
    assert len(events) == 2, "pedestrians throughout: one event per play of the clip"
    assert 0 < events[0].open_s < 2.0 and all(e.frames > 0 for e in events)
    assert trace.duration_s == pytest.approx(2 * 28.6, abs=0.5)
    out = tmp_path / "street.jsonl"
    assert (
        main(["trace", "record", "--source", str(PEOPLE), "--camera", "street", "--out", str(out)])
        == 0
    )
    recorded = read_trace(out)
    assert [(e.open_s, e.close_s, e.frames) for e in recorded.cameras[0].events] == [
        (
            pytest.approx(events[0].open_s, abs=1e-3),
            pytest.approx(events[0].close_s, abs=1e-3),
            events[0].frames,
        )
    ]
    fleet = generate_fleet(FleetShape(cameras=10, hours=2), template=recorded)
    lengths = [e.close_s - e.open_s for c in fleet.cameras for e in c.events]
    assert min(lengths) >= 0.8 * (events[0].close_s - events[0].open_s) - 1e-6
