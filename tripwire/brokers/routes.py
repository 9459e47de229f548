"""Which motion frames reach which model: one route per model, read by its own consumer.

Every route gets every motion frame of the cameras it serves, once: on NATS each route is a
durable consumer of the motion stream (filtered to its cameras), on RabbitMQ a queue bound to
the exchange. The route of the default model (no ``models:`` section) keeps today's names:
consumer ``detector``, queue ``tripwire.motion``; a named model ``coco`` reads consumer
``detector-coco`` / queue ``tripwire.motion.coco``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tripwire.contract import motion_subject
from tripwire.model_config import DEFAULT_MODEL

if TYPE_CHECKING:
    from tripwire.camera_config import CamerasFile


@dataclass(frozen=True, slots=True)
class MotionRoute:
    """One model's share of the motion stream."""

    model: str = DEFAULT_MODEL
    cameras: tuple[str, ...] = ()  # () = every camera
    max_queue: int | None = None  # RabbitMQ: its queue's x-max-length; None = the shared one

    @property
    def default(self) -> bool:
        return self.model == DEFAULT_MODEL

    def name(self, base: str, sep: str) -> str:
        """The consumer or queue name: ``base`` for the default model, else base+sep+model."""
        return base if self.default else f"{base}{sep}{self.model}"

    def subjects(self) -> list[str] | None:
        """The contract's motion subjects (routing keys) it reads; None = all of them."""
        return [motion_subject(c) for c in self.cameras] or None


DEFAULT_ROUTES: tuple[MotionRoute, ...] = (MotionRoute(),)


def pick(routes: Sequence[MotionRoute], model: str | None) -> MotionRoute | None:
    """The route of ``model``; None: the only route, or none when there are several (a
    publisher, or a process that reads no model's frames)."""
    if model is None:
        return routes[0] if len(routes) == 1 else None
    for route in routes:
        if route.model == model:
            return route
    raise KeyError(f"model {model!r} is not one of {[r.model for r in routes]}")


def routes_of(config: CamerasFile) -> tuple[MotionRoute, ...]:
    """The routes of a config: one per model of its ``models:`` section, else the default."""
    if not config.models:
        return DEFAULT_ROUTES
    return tuple(MotionRoute(m.name, tuple(m.cameras), m.max_queue) for m in config.models)
