"""``tripwire bench energy``: a short real run (local stack, real detector) writes every
table, plot and JSONL file, with one row per mode in each table."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.energy import EnergyOptions, run_bench


async def test_short_real_run_writes_every_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    options = EnergyOptions(
        cameras=1,
        fps=10.0,
        duration_s=8.0,
        duty_cycle=0.5,
        out=out,
        modes=("a", "c"),
        idle_s=4.0,
        weights="yolo11n.yaml",  # untrained architecture: no download
    )
    result = await run_bench(options)

    rows = result["energy_bench"]
    assert [r["mode"] for r in rows] == ["a", "c"]
    for name in ("report.md", "summary.json", "power.png", "memory.png"):
        assert (out / name).stat().st_size > 0, name
    for mode in ("a", "c"):
        lines = (out / mode / "samples.jsonl").read_text().splitlines()
        assert len(lines) >= 8
        assert "sources" in json.loads(lines[0])
    for png in ("power.png", "memory.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = (out / "report.md").read_text()
    for heading in ("## Energy and power", "## Memory", "## Pipeline", "## Headline"):
        assert heading in report
    for label in ("| a: every frame, always-on detector |", "| c: motion-gated, scale-to-zero |"):
        assert report.count(label) == 3, label  # one row in each of the three tables
    assert "estimated" in report

    a, c = rows
    assert a["frames_published"] == a["frames_sent"] > 0  # (a) publishes every frame
    assert c["frames_published"] < c["frames_sent"]  # (c) is motion-gated
    assert a["frames_analysed"] > 0 and a["energy_total_j"] > 0
    assert a["cold_starts"] == 0  # always on: started before the window
