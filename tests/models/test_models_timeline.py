"""A replica timeline per model from the timeline itself: with named models the local scaler's
events (scale decisions, worker started/stopping/stopped/crashed, the standby's) carry the
model's name, and the console's scaling page draws one replicas line per model; with one
model the events and the page are as they were. Stand-in worker processes, no broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from console.scaling import read_scaling
from tests.console.test_console_api import TOKEN, config
from tests.scaler.test_scaler_executor import STAND_IN
from tripwire import timeline as tl
from tripwire.archive.local import LocalArchive
from tripwire.eventstore import Store
from tripwire.scaler import Scaler, load_policy, policy_file
from tripwire.scaler.executor import LocalScaler, WorkerPool
from tripwire.scaler.prefork import Zygote


async def _until(condition: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _run_pool(tmp_path: Path, model: str | None, depth: int) -> list[int]:
    """Wake a scaler on a stand-in pool, crash one worker, replace it, stop all; the pids."""
    pool = WorkerPool(
        [sys.executable, "-c", STAND_IN], dict(os.environ), 5.0, tmp_path / str(model), model=model
    )

    async def backlog() -> int:
        return depth

    local = LocalScaler(Scaler(load_policy(policy_file("nats"))), backlog, pool)
    local.wake()
    await local.step()  # the wake's decision, the poll's, and the first worker
    assert pool.running >= 1
    victim = pool.workers[0].process
    pids = [victim.pid]
    os.kill(victim.pid, signal.SIGKILL)
    await victim.wait()
    await pool.converge(1)  # the crash is seen, the worker replaced
    pids += [w.process.pid for w in pool.workers]
    await pool.stop_all()
    return pids


async def test_named_pools_tag_every_event_and_one_model_stays_untagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(tl.ENV, str(path))
    coco, accident = await asyncio.gather(
        _run_pool(tmp_path, "coco", 3), _run_pool(tmp_path, "accident", 0)
    )
    events = list(tl.read(path))
    for model, pids in (("coco", coco), ("accident", accident)):
        mine = [e for e in events if e.get("worker_pid") in pids]
        kinds = {e["event"] for e in mine}
        assert {"worker_started", "worker_crashed", "worker_stopping", "worker_stopped"} <= kinds
        assert {e.get("model") for e in mine} == {model}, mine
    decisions = [(e["model"], e["reason"]) for e in events if e["event"] == "scale_decision"]
    assert ("coco", "wake") in decisions and ("accident", "wake") in decisions

    # The same without a model: no model field anywhere (the one-model timeline as before).
    path.unlink()
    await _run_pool(tmp_path, None, 0)
    plain = list(tl.read(path))
    assert plain and all("model" not in e for e in plain)
    assert {"scale_decision", "worker_started", "worker_crashed"} <= {e["event"] for e in plain}


def test_the_standby_reports_the_models_it_forks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(tl.ENV, str(path))
    tags = {"family": "ultralytics", "models": ["coco", "fire"]}
    shared = Zygote(sys.executable, {}, tmp_path / "z.log", tags=tags)
    shared._handle({"ready": {"pid": 11, "rss_kib": 2048, "import_s": 1.0}})
    own = WorkerPool(
        [sys.executable, "-m", "tripwire.app.cli", "detector"], {}, 5.0, tmp_path, True,
        model="accident",
    )  # fmt: skip
    assert own.standby is not None
    own.standby._handle({"ready": {"pid": 12, "rss_kib": 2048}})
    plain = Zygote(sys.executable, {}, tmp_path / "p.log")
    plain._handle({"ready": {"pid": 13, "rss_kib": 2048}})
    ready = {e["zygote_pid"]: e for e in tl.read(path) if e["event"] == "zygote_ready"}
    assert ready[11]["models"] == ["coco", "fire"] and ready[11]["family"] == "ultralytics"
    assert ready[12]["models"] == ["accident"]
    assert "models" not in ready[13] and "family" not in ready[13]


def _decision(path: Path, t_s: float, replicas: int, depth: int, model: str | None) -> None:
    record = {"t_ns": int(t_s * 1e9), "event": "scale_decision", "pid": 1}
    record.update(replicas=replicas, depth=depth, **({"model": model} if model else {}))
    tl.append(path, record)


def test_read_scaling_splits_replicas_by_model_and_sums_them(tmp_path: Path) -> None:
    now = time.time()
    several = tmp_path / "several.jsonl"
    _decision(several, now - 100, 1, 9, "coco")  # before the window: holds at its start
    _decision(several, now - 50, 1, 5, "accident")
    _decision(several, now - 40, 2, 12, "coco")
    _decision(several, now - 20, 0, 0, "accident")
    _decision(several, now - 10, 0, 0, "coco")
    since = int((now - 60) * 1e9)
    data = read_scaling(several, None, since)
    assert list(data.models) == ["accident", "coco"]
    assert [v for _, v in data.models["coco"].points] == [1, 2, 0]
    assert data.models["coco"].points[0][0] == since
    assert [v for _, v in data.models["accident"].points] == [1, 0]
    assert [v for _, v in data.replicas.points] == [1, 2, 3, 2, 0]  # the sum over the models
    assert [v for _, v in data.depth.points] == [5, 17, 12, 0]

    one = tmp_path / "one.jsonl"
    for t, r in ((50, 1), (40, 2), (10, 0)):
        _decision(one, now - t, r, r * 4, None)
    single = read_scaling(one, None, since)
    assert single.models == {} and [v for _, v in single.replicas.points] == [1, 2, 0]


def test_the_scaling_page_draws_one_replicas_line_per_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    path = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(tl.ENV, str(path))
    store = Store(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    app = create_app(config(), store, LocalArchive(tmp_path / "archive", fsync=False))
    with TestClient(app, follow_redirects=False) as browser:
        assert browser.post("/login", data={"token": TOKEN}).status_code == 303
        for t, r in ((30, 1), (5, 0)):
            _decision(path, now - t, r, r, None)
        page = browser.get("/scaling").text
        assert _replicas_chart(page).count('class="line"') == 1 and "data-model=" not in page
        assert "Detector replicas per model" not in page
        path.unlink()
        _decision(path, now - 30, 1, 4, "coco")
        _decision(path, now - 25, 2, 9, "fire")
        _decision(path, now - 5, 0, 0, "coco")
        page = browser.get("/scaling").text
        chart = _replicas_chart(page)
        drawn = re.findall(r'class="line line-\d" data-model="([a-z]+)"', chart)
        assert drawn == ["coco", "fire"], drawn
        assert "Detector replicas per model" in page
        assert re.search(r'id="replicas-now">2<', page), "the sum: coco 0 + fire 2"


def _replicas_chart(page: str) -> str:
    found = re.search(r'<section class="panel chart" id="chart-replicas">.*?</section>', page, re.S)
    assert found, page[:500]
    return found.group(0)
