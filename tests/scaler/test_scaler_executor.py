"""The local scaler's executor: real worker processes following the Scaler's decisions.

The pool tests use a tiny stand-in worker (a Python process that exits on SIGTERM after a
short "graceful stop"); the integration test drives real detector workers from zero through
a real nats-server and checks the replica timeline and that every frame was archived. The
prefork tests fork real detector workers (untrained yolo11n.yaml) from the standby against
a throwaway nats-server: they consume, stop on SIGTERM, are replaced when they crash,
outlive a killed standby, and nothing is left running after ``stop_all``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tripwire import timeline as tl
from tripwire.archive import ArchiveSettings, open_archive
from tripwire.brokers import Broker, open_broker
from tripwire.contract import FrameMeta
from tripwire.embedded_nats import EmbeddedNats
from tripwire.scaler import Scaler, load_policy, policy_file
from tripwire.scaler.executor import LocalScaler, WorkerPool
from tripwire.scaler.prefork import ForkedWorker
from tripwire.settings import BrokerSettings

STAND_IN = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.3), sys.exit(0)))
    while True:
        time.sleep(0.1)
""")


def _pool(tmp_path: Path) -> WorkerPool:
    return WorkerPool([sys.executable, "-c", STAND_IN], dict(os.environ), 5.0, tmp_path / "logs")


async def _until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_pool_converges_up_and_down_with_graceful_stops(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    await pool.converge(3)
    assert pool.running == 3 and pool.started == 3
    oldest = min(pool.workers, key=lambda w: w.started_at)
    await pool.converge(1)
    assert pool.running == 1

    # Scale-in stops the newest workers and waits for their graceful exit in the background.
    def settled() -> bool:
        pool.reap()
        return len(pool.workers) == 1

    await _until(settled)
    assert pool.workers[0] is oldest
    await pool.stop_all()
    assert pool.workers == [] and pool.crashed == 0


async def test_crashed_worker_is_replaced(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    await pool.converge(2)
    victim = pool.workers[0].process
    os.kill(victim.pid, signal.SIGKILL)
    await victim.wait()
    await pool.converge(2)
    assert pool.crashed == 1 and pool.running == 2 and pool.started == 3
    await pool.stop_all()


DETECTOR = [
    sys.executable,
    "-m",
    "tripwire.app.cli",
    "detector",
    "--weights",
    "yolo11n.yaml",
    "--metrics-port",
    "0",
]


def _fast_policy(tmp_path: Path) -> Path:
    doc = yaml.safe_load(policy_file("nats").read_text())
    spec = doc["spec"]
    spec.update(pollingInterval=1, cooldownPeriod=4, maxReplicaCount=3)
    spec["triggers"][0]["metadata"]["lagThreshold"] = "4"
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["stabilizationWindowSeconds"] = 2
    behavior["scaleUp"]["policies"][0]["periodSeconds"] = 1
    path = tmp_path / "scaledobject.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.timeout(240)
async def test_replicas_follow_a_burst_from_zero_to_n_and_back(tmp_path: Path) -> None:
    """0 -> 1 -> N -> 0 with real detector workers; every frame archived exactly once."""
    pytest.importorskip("ultralytics", reason="the detector extra (ultralytics) is not installed")
    nats = EmbeddedNats.start(tmp_path / "nats")
    home = tmp_path / "home"
    env = {
        **os.environ,
        "TRIPWIRE_BROKER__URL": nats.url,
        "TRIPWIRE_HOME": str(home),
        "TRIPWIRE_BATCH_SIZE": "2",
    }
    env.pop("TRIPWIRE_CONFIG", None)
    pool = WorkerPool(DETECTOR, env, 20.0, home / "logs")
    broker = open_broker(BrokerSettings(), nats.url)
    await broker.connect()
    timeline: list[tuple[float, int]] = []
    scaler = Scaler(load_policy(_fast_policy(tmp_path)))
    local = LocalScaler(scaler, broker.depth, pool)
    runner = asyncio.create_task(local.run())
    try:
        await asyncio.sleep(1.5)
        assert scaler.replicas == 0 and pool.running == 0, "idle: no worker"
        frames = 24
        start = time.monotonic()
        # The idle state is the timeline's first point: the scaler may wake while the
        # frames are still being published, before the loop below first looks.
        timeline.append((0.0, 0))
        await _publish(broker, "cam-1", frames)
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            if not timeline or timeline[-1][1] != scaler.replicas:
                timeline.append((round(time.monotonic() - start, 1), scaler.replicas))
            if scaler.replicas == 0 and len(timeline) > 2 and not pool.workers:
                break
            await asyncio.sleep(0.1)
        counts = [r for _, r in timeline]
        print("replica timeline (s, replicas):", timeline)
        assert counts[0] == 0 and counts[-1] == 0
        assert max(counts) >= 2, "the backlog of 24 with target 4 scales beyond one worker"
        assert counts.index(1) < counts.index(max(counts)), "0 -> 1 first, then 1 -> N"
        archive = open_archive(ArchiveSettings(), home)
        keys = await archive.list("detections/cam-1/")
        assert len(keys) == frames == len(set(keys))
        assert await broker.depth() == 0
        await archive.close()
    finally:
        local.stop()
        await asyncio.wait_for(runner, 60)
        await broker.close()
        nats.stop()


def _jpeg() -> bytes:
    import cv2
    import numpy as np

    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buf.tobytes())


# --- prefork: workers forked from the standby ------------------------------------------


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats.start(tmp_path / "nats")
    yield server
    server.stop()


def _prefork_pool(tmp_path: Path, nats_url: str) -> WorkerPool:
    pytest.importorskip("ultralytics", reason="the detector extra (ultralytics) is not installed")
    home = tmp_path / "home"
    env = {
        **os.environ,
        "TRIPWIRE_BROKER__URL": nats_url,
        "TRIPWIRE_HOME": str(home),
        "TRIPWIRE_BATCH_SIZE": "2",
        "TRIPWIRE_FETCH_WAIT_S": "0.5",
        tl.ENV: str(tmp_path / "timeline.jsonl"),
    }
    env.pop("TRIPWIRE_CONFIG", None)
    return WorkerPool(DETECTOR, env, 10.0, home / "logs", prefork=True)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def _loaded(tmp_path: Path, pids: set[int], within_s: float = 60.0) -> None:
    """Every pid in ``pids`` recorded model_loaded: its model is up, it is consuming."""
    path = tmp_path / "timeline.jsonl"

    def done() -> bool:
        if not path.exists():
            return False
        return pids <= {e["pid"] for e in tl.read(path) if e["event"] == "model_loaded"}

    await _until(done, within_s)


async def _gone(pids: set[int], within_s: float = 10.0) -> None:
    def none_alive() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    await _until(none_alive, within_s)


async def _publish(broker: Broker, camera: str, count: int) -> None:
    body = _jpeg()
    for seq in range(count):
        meta = FrameMeta(
            camera=camera,
            seq=seq,
            capture_ns=1_795_000_000_000_000_000 + seq,
            receive_ns=time.time_ns(),
            width=320,
            height=240,
            content_type="image/jpeg",
            motion_score=0.1,
        )
        await broker.publish(meta.subject, body, meta.to_headers())


async def _archived(home: Path, camera: str, count: int, within_s: float = 60.0) -> None:
    archive = open_archive(ArchiveSettings(), home)
    keys: list[str] = []
    deadline = time.monotonic() + within_s
    try:
        while len(keys) < count and time.monotonic() < deadline:
            keys = await archive.list(f"detections/{camera}/")
            await asyncio.sleep(0.2)
    finally:
        await archive.close()
    assert len(keys) == count == len(set(keys))


def test_prefork_needs_a_tripwire_command(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tripwire commands only"):
        WorkerPool([sys.executable, "-c", STAND_IN], {}, 5.0, tmp_path, prefork=True)


@pytest.mark.timeout(240)
async def test_forked_workers_consume_and_stop_all_leaves_nothing(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    pool = _prefork_pool(tmp_path, nats.url)
    broker = open_broker(BrokerSettings(), nats.url)
    await broker.connect()
    try:
        await pool.start()
        standby = pool.standby
        assert standby is not None and standby.process is not None
        assert await standby.wait_ready(120), "the standby finished its imports"
        assert standby.info is not None and standby.info["rss_kib"] > 0
        await pool.converge(2)
        pids = {w.process.pid for w in pool.workers}
        assert all(isinstance(w.process, ForkedWorker) for w in pool.workers)
        assert {_parent(pid) for pid in pids} == {standby.process.pid}, "forked, not exec'd"
        await _loaded(tmp_path, pids)
        await _publish(broker, "cam-1", 6)
        await _archived(tmp_path / "home", "cam-1", 6)
        zygote_pid = standby.process.pid
    finally:
        await pool.stop_all()
        await broker.close()
    assert pool.workers == [] and pool.crashed == 0
    await _gone(pids | {zygote_pid})


@pytest.mark.timeout(240)
async def test_forked_workers_scale_in_on_sigterm_and_crashes_are_replaced(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    pool = _prefork_pool(tmp_path, nats.url)
    try:
        await pool.start()
        await pool.converge(2)
        first, second = (w.process for w in pool.workers)
        await _loaded(tmp_path, {first.pid, second.pid})

        # Scale-in: the newest gets SIGTERM and stops gracefully (exit 0), not a crash.
        await pool.converge(1)
        assert await asyncio.wait_for(second.wait(), 30) == 0

        def settled() -> bool:
            pool.reap()
            return len(pool.workers) == 1

        await _until(settled)
        assert pool.crashed == 0

        # A crash (the exit the standby reports) is counted and replaced by a new fork.
        os.kill(first.pid, signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        await pool.converge(1)
        assert pool.crashed == 1 and pool.running == 1 and pool.started == 3
        replacement = pool.workers[0].process
        assert isinstance(replacement, ForkedWorker)
        await _loaded(tmp_path, {replacement.pid})
    finally:
        await pool.stop_all()
    await _gone({first.pid, second.pid, replacement.pid})


@pytest.mark.timeout(240)
async def test_killed_standby_spares_its_workers_and_is_replaced(
    tmp_path: Path, nats: EmbeddedNats
) -> None:
    pool = _prefork_pool(tmp_path, nats.url)
    broker = open_broker(BrokerSettings(), nats.url)
    await broker.connect()
    try:
        await pool.converge(1)
        standby = pool.standby
        assert standby is not None and standby.process is not None
        old_zygote = standby.process
        survivor = pool.workers[0].process
        await _loaded(tmp_path, {survivor.pid})

        old_zygote.kill()
        await old_zygote.wait()
        await _until(lambda: not standby.alive)
        await asyncio.sleep(0.5)
        os.kill(survivor.pid, 0)  # still running: the standby's death is not its own

        await pool.converge(1)  # the next step starts a new standby; the count holds
        assert standby.starts == 2 and standby.process is not None
        assert pool.running == 1 and pool.started == 1 and pool.crashed == 0
        new_zygote = standby.process.pid
        await pool.converge(2)
        newcomer = pool.workers[1].process
        assert _parent(newcomer.pid) == new_zygote
        await _loaded(tmp_path, {newcomer.pid})
        await _publish(broker, "cam-2", 4)  # the orphan and the newcomer share the work
        await _archived(tmp_path / "home", "cam-2", 4)
    finally:
        await pool.stop_all()  # the orphan too: signalled and watched through its pidfd
        await broker.close()
    assert pool.workers == [] and pool.crashed == 0
    await _gone({survivor.pid, newcomer.pid, old_zygote.pid, new_zygote})


async def test_a_standby_that_cannot_start_does_not_block_workers(tmp_path: Path) -> None:
    """The standby refuses a bad setting at its start; workers start the ordinary way."""
    config = tmp_path / "cameras.yaml"
    config.write_text("cameras: []\n")
    env = {**os.environ, "TRIPWIRE_BATCH_SIZE": "not-a-number"}  # read by the standby only
    command = [sys.executable, "-m", "tripwire.app.cli", "config", "check", str(config)]
    pool = WorkerPool(command, env, 5.0, tmp_path / "logs", prefork=True)
    await pool.converge(1)
    worker = pool.workers[0].process
    assert not isinstance(worker, ForkedWorker)
    assert await asyncio.wait_for(worker.wait(), 30) == 0
    assert pool.standby is not None and not pool.standby.alive
    await pool.stop_all()
