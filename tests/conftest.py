"""Fixtures that start real servers: a throwaway nats-server, the machine's RabbitMQ."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.events_db import DIALECTS, empty_tables, fresh_database
from tests.k8s_cluster import K8S_TOOLKIT, Plane, PlaneError, running_plane
from tests.nats_servers import nats_server_in
from tests.s3_server import SeaweedS3
from tripwire.embedded_nats import EmbeddedNats
from tripwire.eventstore import Store

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with nats_server_in(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture(scope="module")
def module_nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server of the test module's own, for tests whose processes declare the default
    streams (TRIPWIRE_MOTION on tripwire.motion.>), which would overlap other modules' test
    streams on the session's server."""
    with nats_server_in(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The machine's RabbitMQ; a missing server is a failure, not a skip (.ci/run starts it)."""
    try:
        socket.create_connection(("127.0.0.1", 5672), 2).close()
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not running on 127.0.0.1:5672 ({exc}); start it with "
            "`rabbitmq-server -detached`"
        )
    return RABBITMQ_URL


@pytest.fixture
def unique() -> str:
    """A short unique suffix for stream, queue and exchange names shared across test runs."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"test data folder {SHARED_DATA} is absent (see shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A throwaway SeaweedFS S3 server (standing in for MinIO) on free loopback ports."""
    with SeaweedS3.start(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_events_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL database for the session, migrated (CREATE DATABASE takes seconds)."""
    with fresh_database("postgresql", tmp_path_factory.mktemp("pg")) as url:
        made = Store(url)
        made.migrate()
        made.close()
        yield url


@pytest.fixture(params=DIALECTS)
def events_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty events database: a new SQLite file, or the session's PostgreSQL
    database emptied."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        made = Store(url)
        made.migrate()
        made.close()
        yield url
        return
    url = request.getfixturevalue("postgres_events_db")
    empty_tables(url)
    yield url


@pytest.fixture
def store(events_db_url: str) -> Iterator[Store]:
    """A migrated, empty events store on each database."""
    made = Store(events_db_url)
    yield made
    made.close()


@pytest.fixture(scope="session")
def k8s(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """A real kube-apiserver 1.20.2 (RBAC enforced) + etcd + controller manager for the session."""
    if not (K8S_TOOLKIT / "up").exists():
        pytest.skip(f"no Kubernetes test plane: {K8S_TOOLKIT} is absent (see its README)")
    # A folder that outlives the session keeps the decompressed binaries and etcd's venv
    # (first start ~20-60 s, later ones ~5 s).
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    state = cache.mkdir("k8s-plane") if cache else tmp_path_factory.mktemp("k8s")
    try:
        with running_plane(state) as plane:
            yield plane
    except PlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
