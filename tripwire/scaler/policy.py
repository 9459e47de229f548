"""The scaling policy: a KEDA ScaledObject file, read into what KEDA and the HPA decide with.

The files in deploy/keda/ are what KEDA applies on k3s; the local scaler reads the package's
copy of the same file (``load_policy(policy_file("nats"))``), so one policy is tested and
measured everywhere.
Defaults are KEDA's (pollingInterval 30, cooldownPeriod 300, minReplicaCount 0,
maxReplicaCount 100, activation threshold 0) and the HPA's (see ``behavior``).

Fields of the ScaledObject that cannot change a replica decision are ignored. Fields that would
change it but are not modelled (fallback, idleReplicaCount, scalingModifiers, pause
annotations, several triggers, a metricType other than AverageValue) are refused with a
``PolicyError``, so the two executors never disagree silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from tripwire.errors import ConfigError
from tripwire.keepalive import KeepAliveSpec, keep_alive_for, spec_from_annotations
from tripwire.scaler.behavior import HpaBehavior
from tripwire.scaler.triggers import TRIGGERS, Broker, Trigger
from tripwire.validation import Loc, validation_message

PACKAGED = Path(__file__).resolve().with_name("keda")  # package data: deploy/keda's policies
PAUSE_ANNOTATION_PREFIX = "autoscaling.keda.sh/paused"


class PolicyError(ConfigError):
    """A ScaledObject file cannot drive the scaler; the message names the file and the field."""


class _Camel(BaseModel):
    # KEDA fields we do not read are ignored here; the CRD test validates the whole object.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class ScaleTargetRef(_Camel):
    """The workload the ScaledObject scales (the detector Deployment)."""

    api_version: str = Field("apps/v1", description="KEDA's default")
    kind: str = Field("Deployment", description="KEDA's default")
    name: str = Field(min_length=1, description="in the ScaledObject's namespace")


class _AuthRef(_Camel):
    name: str = Field(min_length=1)
    kind: str = "TriggerAuthentication"


class _RawTrigger(_Camel):
    type: str = Field(min_length=1)
    metadata: dict[str, str]
    metric_type: str = "AverageValue"
    authentication_ref: _AuthRef | None = None


class _HpaConfig(_Camel):
    behavior: HpaBehavior | None = None


class _Advanced(_Camel):
    horizontal_pod_autoscaler_config: _HpaConfig | None = None
    scaling_modifiers: dict[str, Any] | None = None


class _Spec(_Camel):
    scale_target_ref: ScaleTargetRef
    polling_interval: int = Field(30, ge=1)
    cooldown_period: int = Field(300, ge=0)
    initial_cooldown_period: int = Field(0, ge=0)
    min_replica_count: int = Field(0, ge=0)
    max_replica_count: int = Field(100, ge=1)
    idle_replica_count: int | None = None
    fallback: dict[str, Any] | None = None
    advanced: _Advanced | None = None
    triggers: list[_RawTrigger] = Field(min_length=1)


class _Meta(_Camel):
    name: str = Field(min_length=1)
    namespace: str = "default"
    annotations: dict[str, str] = Field(default_factory=dict)


class _ScaledObject(_Camel):
    api_version: Literal["keda.sh/v1alpha1"]
    kind: Literal["ScaledObject"]
    metadata: _Meta
    spec: _Spec


class ScalingPolicy(BaseModel):
    """What one ScaledObject tells both executors; KEDA's and the HPA's defaults applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="the file it came from, for messages")
    name: str = Field(description="ScaledObject name")
    namespace: str = Field(description="ScaledObject namespace (also the target's)")
    target_ref: ScaleTargetRef = Field(description="the scaled workload")
    polling_interval_s: int = Field(ge=1, description="KEDA polls the trigger this often")
    cooldown_period_s: int = Field(ge=0, description="-> 0 after this long inactive")
    initial_cooldown_period_s: int = Field(ge=0, description="no -> 0 this soon after creation")
    min_replicas: int = Field(ge=0, description="minReplicaCount; 0 = scale to zero")
    max_replicas: int = Field(ge=1, description="maxReplicaCount")
    trigger: Trigger = Field(description="the one trigger, parsed as KEDA's scaler parses it")
    behavior: HpaBehavior | None = Field(
        description="HPA behavior, defaults filled in; None = the HPA's behavior-less path"
    )
    keep_alive: KeepAliveSpec = Field(
        default_factory=KeepAliveSpec,
        description="keep-alive policy (keepalive.tripwire.dev/ annotations; KEDA ignores them)",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicaCount must not exceed maxReplicaCount")
        return self

    @property
    def broker(self) -> Broker:
        """The broker the trigger reads."""
        return self.trigger.broker

    @property
    def target_value(self) -> float:
        """Metric per replica (lagThreshold / value): desired = ceil(metric / this)."""
        return self.trigger.target

    @property
    def activation_value(self) -> float:
        """Active iff metric > this (activationLagThreshold / activationValue)."""
        return self.trigger.activation

    @property
    def hpa_min_replicas(self) -> int:
        """The HPA's floor: KEDA gives it minReplicaCount, or 1 when that is 0."""
        return max(self.min_replicas, 1)

    @property
    def activation_replicas(self) -> int:
        """What KEDA scales 0 to on activation: minReplicaCount, or 1 when that is 0."""
        return max(self.min_replicas, 1)


def policy_file(broker: Broker) -> Path:
    """The default ScaledObject of ``broker``: the package's copy of
    deploy/keda/<broker>/scaledobject.yaml (tripwire/scaler/keda/, kept equal to deploy/keda
    by tests/scaler/test_scaler_packaged_policy.py), so a checkout and a wheel read the same file
    and the package never reaches into the source tree."""
    return PACKAGED / broker / "scaledobject.yaml"


def write_policy_copy(
    path: Path,
    broker: Broker = "nats",
    *,
    spec: Mapping[str, Any] | None = None,
    scale_down_window_s: int | None = None,
) -> Path:
    """Write the shipped policy of ``broker`` to ``path`` with ``spec`` fields replaced
    (``pollingInterval``, ``cooldownPeriod``, ``minReplicaCount``...) and, when given, the HPA's
    scale-down stabilization window: the copies benchmarks and tests run with."""
    doc = yaml.safe_load(policy_file(broker).read_text())
    doc["spec"].update(spec or {})
    if scale_down_window_s is not None:
        behavior = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        behavior["scaleDown"]["stabilizationWindowSeconds"] = scale_down_window_s
    path.write_text(yaml.safe_dump(doc))
    return path


def _raise(exc: ValidationError, source: str, prefix: Loc = ()) -> NoReturn:
    raise PolicyError(validation_message(exc, source, prefix)) from None


def _refuse(source: str, where: str, why: str) -> NoReturn:
    raise PolicyError(f"{source}: {where}: {why}")


def policy_from_object(obj: Mapping[str, Any], source: str = "<object>") -> ScalingPolicy:
    """The policy of one parsed ScaledObject (a mapping as YAML gives it)."""
    try:
        scaled = _ScaledObject.model_validate(obj)
    except ValidationError as exc:
        _raise(exc, source)
    spec = scaled.spec
    not_modelled = "not modelled by the local scaler, so the two executors would differ"
    for key in scaled.metadata.annotations:
        if key.startswith(PAUSE_ANNOTATION_PREFIX):
            _refuse(source, f"metadata.annotations.{key}", not_modelled)
    if spec.idle_replica_count is not None:
        _refuse(source, "spec.idleReplicaCount", not_modelled)
    if spec.fallback is not None:
        _refuse(source, "spec.fallback", not_modelled)
    if spec.advanced is not None and spec.advanced.scaling_modifiers is not None:
        _refuse(source, "spec.advanced.scalingModifiers", not_modelled)
    if len(spec.triggers) != 1:
        _refuse(source, "spec.triggers", "the detector scales on exactly one trigger")
    raw = spec.triggers[0]
    if raw.metric_type != "AverageValue":
        _refuse(source, "spec.triggers[0].metricType", f"{raw.metric_type}: {not_modelled}")
    kind = TRIGGERS.get(raw.type)
    if kind is None:
        _refuse(source, "spec.triggers[0].type", f"{raw.type}: use one of {sorted(TRIGGERS)}")
    try:
        trigger = kind.model_validate(raw.metadata)
    except ValidationError as exc:
        _raise(exc, source, ("spec", "triggers", 0, "metadata"))
    try:
        keep_alive = spec_from_annotations(scaled.metadata.annotations)
        keep_alive_for(keep_alive, spec.cooldown_period)  # a break-even profile must load
    except (ValueError, ConfigError) as exc:
        _refuse(source, "metadata.annotations", str(exc))
    hpa = spec.advanced.horizontal_pod_autoscaler_config if spec.advanced else None
    try:
        return ScalingPolicy(
            source=source,
            name=scaled.metadata.name,
            namespace=scaled.metadata.namespace,
            target_ref=spec.scale_target_ref,
            polling_interval_s=spec.polling_interval,
            cooldown_period_s=spec.cooldown_period,
            initial_cooldown_period_s=spec.initial_cooldown_period,
            min_replicas=spec.min_replica_count,
            max_replicas=spec.max_replica_count,
            trigger=trigger,
            behavior=hpa.behavior if hpa else None,
            keep_alive=keep_alive,
        )
    except ValidationError as exc:
        _raise(exc, source, ("spec",))


def parse_policy(text: str, source: str = "<string>") -> ScalingPolicy:
    """The policy of the one ScaledObject in a (multi-document) YAML text."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    scaled = [
        doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "ScaledObject"
    ]
    if len(scaled) != 1:
        found = "no ScaledObject" if not scaled else f"{len(scaled)} ScaledObjects"
        raise PolicyError(f"{source}: {found}; a policy file holds exactly one")
    return policy_from_object(scaled[0], source)


def load_policy(path: str | os.PathLike[str]) -> ScalingPolicy:
    """Read and parse a policy file (see ``policy_file``)."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read: {exc.strerror}") from None
    return parse_policy(text, str(file))
