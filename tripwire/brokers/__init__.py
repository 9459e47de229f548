"""Broker adapters: one Protocol (``tripwire.brokers.protocol``), one file per broker.

Nothing outside this package imports pika or nats.
"""

from tripwire.brokers.factory import open_broker
from tripwire.brokers.protocol import Broker, Message

__all__ = ["Broker", "Message", "open_broker"]
