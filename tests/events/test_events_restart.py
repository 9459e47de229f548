"""One incident, one alert through a kill -9 of the events function: results that 4 detector
replicas published out of order are written by a real ``tripwire events`` process that is
killed mid-burst and started again; every result lands once and alerts equal incidents."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.event_factory import T0
from tests.events.test_events_alerts import INCIDENT_RULE, burst
from tripwire.brokers import open_broker
from tripwire.contract import Header, detections_subject
from tripwire.embedded_nats import EmbeddedNats
from tripwire.event_messages import encode
from tripwire.eventstore import Store
from tripwire.eventstore.tables import alerts, results
from tripwire.settings import BrokerSettings

INCIDENTS = 3


def _count(store: Store, table: sa.Table, camera: str) -> int:
    """Rows of ``camera`` (the session's NATS server may carry other tests' results)."""
    try:
        with store.read() as conn:
            query = sa.select(sa.func.count()).select_from(table).where(table.c.camera == camera)
            return int(conn.execute(query).scalar_one())
    except Exception:
        return 0


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tripwire.app.cli", "events"],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[str]:
    """A server of its own: this test declares the default streams (tripwire.>), which
    would overlap the per-test streams other tests declare on the session's server."""
    server = EmbeddedNats.start(tmp_path / "nats")
    yield server.url
    server.stop()


@pytest.mark.timeout(300)
def test_kill_9_mid_burst_then_restart_keeps_one_alert_per_incident(
    events_db_url: str, own_nats: str, tmp_path: Path, unique: str
) -> None:
    nats_url = own_nats
    camera = f"k9-{unique}"
    frames = burst(camera, INCIDENTS)
    # 4 replicas take the camera's frames round robin; each publishes its results in turn.
    order = [f for i in range(4) for f in frames[i::4]]

    async def publish() -> None:
        broker = open_broker(BrokerSettings(), nats_url)
        await broker.connect()
        try:
            for start in range(0, len(order), 100):
                await asyncio.gather(*(
                    broker.publish(detections_subject(camera), encode(r),
                                   {Header.ID: f"{r.camera}-{r.seq}-{r.capture_ns}-det",
                                    Header.CAMERA: camera})
                    for r in order[start:start + 100]
                ))  # fmt: skip
        finally:
            await broker.close()

    asyncio.run(publish())
    zone_free = {"cameras": [{"id": camera, "token_hash": "sha256:" + "0" * 64}],
                 "alerts": [INCIDENT_RULE.model_dump()]}  # fmt: skip
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(zone_free))
    env = {
        **os.environ,
        "TRIPWIRE_HOME": str(tmp_path),
        "TRIPWIRE_CONFIG": str(tmp_path / "cameras.yaml"),
        "TRIPWIRE_BROKER__URL": nats_url,
        "TRIPWIRE_EVENTS_DB__URL": events_db_url,
        "TRIPWIRE_METRICS_PORT": "0",
        "TRIPWIRE_BATCH_SIZE": "16",  # many small transactions: the kill lands mid-burst
        "TRIPWIRE_FETCH_WAIT_S": "0.2",
    }
    store = Store(events_db_url)
    log = tmp_path / "events.log"
    try:
        first = _start(env, log)
        deadline = time.monotonic() + 120
        while _count(store, results, camera) < len(frames) // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        written_before = _count(store, results, camera)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert 0 < written_before < len(frames), "the kill must land mid-burst"
        second = _start(env, log)
        deadline = time.monotonic() + 180
        while _count(store, results, camera) < len(frames) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # anything still in flight
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
        stored = _count(store, results, camera)
        with store.read() as conn:
            query = sa.select(alerts.c.capture_ns).where(alerts.c.camera == camera)
            raised = conn.execute(query).scalars().all()
    finally:
        store.close()
    assert stored == len(frames), log.read_text()[-3000:]
    print(f"\n[kill -9 mid-burst] {written_before} of {len(frames)} results written before the "
          f"kill; alerts {len(raised)} for {INCIDENTS} incidents")  # fmt: skip
    assert len(raised) == INCIDENTS, sorted((t - T0) / 1e9 for t in raised)
