"""Pick the adapter for a broker URL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tripwire.brokers.protocol import Broker, Feed
from tripwire.brokers.routes import MotionRoute
from tripwire.errors import ConfigError
from tripwire.urls import redact

if TYPE_CHECKING:  # settings imports the broker settings blocks from this package
    from tripwire.settings import BrokerSettings


def open_broker(
    settings: BrokerSettings,
    url: str,
    feed: Feed = "motion",
    *,
    routes: Sequence[MotionRoute] | None = None,
    model: str | None = None,
) -> Broker:
    """An unconnected adapter for ``url`` (call ``await broker.connect()``) whose ``fetch``
    and ``depth`` read ``feed``: motion frames (detectors) or the events function's feed.

    ``routes``: every model's share of the motion stream (:func:`routes_of` the config),
    declared on connect; ``()`` declares none (a process that only listens); None: the
    default model's, unless models were declared already. ``model``: the one whose frames
    ``fetch`` and ``depth`` read."""
    scheme = urlsplit(url).scheme
    adapter: Callable[..., Broker]
    if scheme in {"nats", "tls"}:
        from tripwire.brokers.jetstream import JetStreamBroker

        adapter = partial(JetStreamBroker, url, settings.nats)
    elif scheme in {"amqp", "amqps"}:
        from tripwire.brokers.rabbitmq import RabbitBroker

        adapter = partial(RabbitBroker, url, settings.rabbitmq)
    else:
        raise ConfigError(f"broker url {redact(url)}: unknown scheme {scheme!r}")
    return adapter(
        connect_timeout_s=settings.connect_timeout_s,
        publish_timeout_s=settings.publish_timeout_s,
        feed=feed,
        routes=routes,
        model=model,
    )
