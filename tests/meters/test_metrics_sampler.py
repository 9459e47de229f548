"""The sampler end to end on this machine's real sources: JSONL, Prometheus, overhead, loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tripwire.meters import MetricsSettings, Pipeline, Sampler, SourceReport
from tripwire.meters.cpu_rapl import RaplCpu


class Broken:
    """A source whose hardware went away mid-run."""

    name = "broken"

    def read(self) -> SourceReport:
        raise OSError("device vanished")

    def close(self) -> None:
        raise OSError("still gone")


def _sampler(tmp_path: Path, **probes: Any) -> Sampler:
    settings = MetricsSettings(interval_s=0.05, jsonl=tmp_path / "samples.jsonl")
    pids = {"sampler": [os.getpid()]}
    return Sampler.from_settings(settings, processes=lambda: pids, probes=probes or None)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cpu_power_is_measured_by_rapl_or_estimated_and_says_which(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path)
    sample = sampler.sample_once()
    sampler.close()
    sources = {r.source: r for r in sample.sources}
    cpu_power = [
        (source, r)
        for source, r in sample.readings()
        if r.metric == "power_watts" and source.startswith("cpu")
    ]
    assert cpu_power
    if RaplCpu().available:
        assert {(s, r.kind) for s, r in cpu_power} == {("cpu_rapl", "measured")}
    else:  # this machine: no readable RAPL, so the estimate, labelled and with the reason
        assert not sources["cpu_rapl"].available
        assert "RAPL not readable" in (sources["cpu_rapl"].error or "")
        assert {(s, r.kind) for s, r in cpu_power} == {("cpu_estimate", "estimated")}
        assert all("W/cpu" in r.method for _, r in cpu_power)


def test_jsonl_lines_parse_and_carry_labels_and_overhead(tmp_path: Path) -> None:
    frames = iter(range(100, 1000, 100))
    sampler = _sampler(
        tmp_path, replicas=lambda: 2, frames_in_total=lambda: next(frames), queue_depth=lambda: None
    )
    for _ in range(3):
        sampler.sample_once()
    sampler.close()

    lines = _lines(tmp_path / "samples.jsonl")
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert all(a["t_ns"] < b["t_ns"] for a, b in itertools.pairwise(lines))
    for line in lines:
        assert line["interval_s"] > 0
        assert line["overhead"]["wall_s"] > 0 and line["overhead"]["cpu_s"] >= 0
        assert set(line["sources"]) >= {"gpu_nvml", "cpu_rapl", "cpu_estimate", "memory"}
        for name, source in line["sources"].items():
            assert isinstance(source["available"], bool)
            if not source["available"]:
                assert source["error"], name
            for reading in source["readings"]:
                assert reading["kind"] in ("measured", "estimated")
                assert reading["method"]
                assert isinstance(reading["value"], float)
                assert isinstance(reading["labels"], dict)
    pipeline = {r["metric"]: r["value"] for r in lines[-1]["sources"]["pipeline"]["readings"]}
    # queue depth unknown (None) is left out, not recorded as 0
    assert pipeline == {"pipeline_replicas": 2.0, "pipeline_frames_in_total": 300.0}
    rss = [
        r for r in lines[-1]["sources"]["memory"]["readings"] if r["metric"] == "process_rss_bytes"
    ]
    assert rss[0]["labels"] == {"role": "sampler", "pid": str(os.getpid())}


def test_prometheus_text_has_the_gauges_and_counters(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path, replicas=lambda: 1, detections_total=lambda: 7)
    assert sampler.prometheus_text() == ""  # nothing before the first sample
    sampler.sample_once()
    sampler.close()
    text = sampler.prometheus_text()
    for line in (
        "# TYPE tripwire_power_watts gauge",
        "# TYPE tripwire_energy_joules_total counter",
        "# TYPE tripwire_process_rss_bytes gauge",
        "# TYPE tripwire_process_uss_bytes gauge",
        "# TYPE tripwire_pipeline_detections_total counter",
        'tripwire_pipeline_replicas{kind="measured",source="pipeline"} 1.0',
        'tripwire_metrics_source_up{source="memory"} 1.0',
        "# TYPE tripwire_metrics_sample_seconds gauge",
        "# TYPE tripwire_metrics_sample_cpu_seconds gauge",
    ):
        assert line in text
    assert f'pid="{os.getpid()}",role="sampler"' in text
    power = [ln for ln in text.splitlines() if ln.startswith("tripwire_power_watts{")]
    assert power and all('kind="measured"' in ln or 'kind="estimated"' in ln for ln in power)


def test_a_failing_source_or_probe_is_reported_not_raised(tmp_path: Path) -> None:
    def no_depth() -> float:
        raise ConnectionError("broker down")

    sampler = Sampler([Broken(), Pipeline({"queue_depth": no_depth, "replicas": lambda: 0})])
    sample = sampler.sample_once()
    broken, pipeline = sample.sources
    assert not broken.available and broken.error == "OSError: device vanished"
    assert pipeline.available and pipeline.error == "queue_depth: ConnectionError: broker down"
    assert [r.metric for r in pipeline.readings] == ["pipeline_replicas"]
    assert 'tripwire_metrics_source_up{source="broken"} 0.0' in sampler.prometheus_text()
    sampler.close()  # a close that raises does not stop the others


async def test_run_samples_on_the_interval_until_stopped(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path)
    seen: list[int] = []
    stop = asyncio.Event()

    def on_sample(sample: Any) -> None:
        seen.append(sample.seq)
        if len(seen) == 4:
            stop.set()

    await asyncio.wait_for(sampler.run(stop, on_sample), timeout=10)
    sampler.close()
    assert seen == [1, 2, 3, 4]
    lines = _lines(tmp_path / "samples.jsonl")
    assert len(lines) == 4
    # the loop waits before its first sample, so even the first covers a whole interval
    assert lines[0]["interval_s"] >= 0.04
    assert all(line["interval_s"] > 0 for line in lines)


async def test_run_returns_at_once_when_stopped_between_samples(tmp_path: Path) -> None:
    sampler = Sampler([], interval_s=60)
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert sampler.last is None


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"interval_s": 0}, "greater than or equal"),  # a zero interval would spin
        ({"intervall_s": 1}, "Extra inputs"),  # a typo is an error, not ignored
        ({"cpu": {"tdp_per_core_w": -1}}, "greater than 0"),  # negative power
        ({"cpu": {"idle": 5}}, "Extra inputs"),  # the field is idle_w
    ],
)
def test_settings_refuse_bad_values(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        MetricsSettings.model_validate(fields)


def test_cli_prints_samples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tripwire.meters", "--seconds", "0.5", "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    samples = [json.loads(line) for line in out.splitlines()]
    assert [s["seq"] for s in samples] == [1, 2]
    assert samples[0]["sources"]["memory"]["available"] is True
