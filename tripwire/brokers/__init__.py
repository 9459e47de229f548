"""Broker adapters: one Protocol (``tripwire.brokers.protocol``), one file per broker.

Nothing outside this package imports pika or nats.
"""

from tripwire.brokers.factory import open_broker
from tripwire.brokers.protocol import Broker, Message
from tripwire.brokers.routes import MotionRoute, routes_of

__all__ = ["Broker", "Message", "MotionRoute", "open_broker", "routes_of"]
