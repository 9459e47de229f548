"""The detector pools of ``tripwire up`` with a ``models:`` section: one per model.

Each model gets a :class:`~tripwire.scaler.executor.WorkerPool` of ``tripwire detector
--model <name>`` workers and a :class:`~tripwire.scaler.executor.LocalScaler` that follows
the model's own ScaledObject (:func:`tripwire.model_manifests.model_policies`) on the backlog
of the model's own consumer or queue (an adapter opened for that model). Pools of one model
family (:func:`tripwire.model_config.family`: the same imports) fork their workers from one
shared prefork standby, not one standby per model.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tripwire.brokers import Broker, MotionRoute, open_broker
from tripwire.camera_config import CamerasFile
from tripwire.model_config import family
from tripwire.model_manifests import model_policies
from tripwire.scaler import Scaler, ScalingPolicy
from tripwire.scaler.executor import LocalScaler, WorkerPool
from tripwire.scaler.prefork import Zygote
from tripwire.scaler.triggers import Broker as BrokerKind
from tripwire.settings import BrokerSettings


@dataclass
class ModelPools:
    """Every model's scaler by name, with the adapters and standbys they use."""

    scalers: dict[str, LocalScaler] = field(default_factory=dict)
    depth_brokers: list[Broker] = field(default_factory=list)
    standbys: dict[str, Zygote] = field(default_factory=dict)

    async def start(
        self,
        config: CamerasFile,
        broker: tuple[BrokerSettings, str, Sequence[MotionRoute]],
        command: Sequence[str],
        env: dict[str, str],
        stop_timeout_s: float,
        log_dir: Path,
        prefork: bool,
    ) -> ScalingPolicy:
        """Build (not run) each model's pool and scaler; returns the first model's policy."""
        settings, url, routes = broker
        kind: BrokerKind = "rabbitmq" if url.startswith("amqp") else "nats"
        policies = model_policies(config, kind)
        families: dict[str, list[str]] = {}
        for model in config.models:
            families.setdefault(family(model.weights), []).append(model.name)
        for model in config.models:
            depth = open_broker(settings, url, routes=routes, model=model.name)
            self.depth_brokers.append(depth)
            await depth.connect()
            name = family(model.weights)
            if prefork and name not in self.standbys:
                self.standbys[name] = Zygote(
                    sys.executable,
                    env,
                    log_dir / f"zygote-{name}.log",
                    tags={"family": name, "models": families[name]},
                )
                await self.standbys[name].ensure_running()
            pool = WorkerPool(
                [*command, "--model", model.name],
                env,
                stop_timeout_s,
                log_dir / model.name,
                prefork=prefork,
                shared_standby=self.standbys.get(name),
                model=model.name,
            )
            self.scalers[model.name] = LocalScaler(Scaler(policies[model.name]), depth.depth, pool)
        return policies[config.models[0].name]

    async def close(self) -> None:
        """After the pools stopped their workers: the shared standbys, then the adapters."""
        for standby in self.standbys.values():
            await standby.stop()
        for depth in self.depth_brokers:
            await depth.close()


def changed_models(old: CamerasFile, new: CamerasFile) -> list[str]:
    """Models of both configs whose entries differ (new weights, same name): to swap."""
    return [m.name for m in new.models if (was := old.model(m.name)) is not None and was != m]
