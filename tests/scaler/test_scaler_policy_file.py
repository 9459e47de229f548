"""Reading a ScaledObject into a policy: KEDA's defaults, clear refusals, and the real files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.scaled_object import nats_scaled_object
from tripwire.brokers.settings import NatsSettings, RabbitSettings
from tripwire.scaler import (
    HpaPolicy,
    NatsJetStreamTrigger,
    PolicyError,
    RabbitMQTrigger,
    Scaler,
    ScalingPolicy,
    load_policy,
    parse_policy,
    policy_file,
    policy_from_object,
)
from tripwire.settings import DetectorSettings

MINIMAL: dict[str, Any] = nats_scaled_object("d")
RABBIT_TRIGGER: dict[str, Any] = {
    "type": "rabbitmq",
    "metadata": {"protocol": "http", "queueName": "q"},
    "authenticationRef": {"name": "auth"},
}


def edited(*edits: tuple[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """MINIMAL with each (path, value) set; ``...`` deletes the key, one past a list appends."""
    obj = copy.deepcopy(MINIMAL)
    for path, value in edits:
        node: Any = obj
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        last = path[-1]
        if value is ...:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[last] = copy.deepcopy(value)
    return obj


TRIGGER_META = ("spec", "triggers", 0, "metadata")
BEHAVIOR = ("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior")


def test_keda_defaults_apply_to_what_the_file_leaves_out() -> None:
    policy = policy_from_object(MINIMAL)
    assert policy.polling_interval_s == 30  # KEDA: pollingInterval default
    assert policy.cooldown_period_s == 300  # KEDA: cooldownPeriod default
    assert policy.initial_cooldown_period_s == 0
    assert (policy.min_replicas, policy.max_replicas) == (0, 100)  # KEDA: min 0, max 100
    assert policy.target_ref.api_version == "apps/v1" and policy.target_ref.kind == "Deployment"
    assert policy.target_value == 10.0  # nats-jetstream: lagThreshold default 10
    assert policy.activation_value == 0.0  # activation thresholds default to 0
    assert policy.behavior is None  # no behavior block: the HPA's behavior-less path
    assert policy.namespace == "tripwire" and policy.broker == "nats"


def test_rabbitmq_defaults_to_queue_length_20() -> None:
    # rabbitmq_scaler.go: neither mode, value nor queueLength -> QueueLength with value 20
    policy = policy_from_object(edited((("spec", "triggers"), [RABBIT_TRIGGER])))
    assert (policy.broker, policy.target_value, policy.activation_value) == ("rabbitmq", 20.0, 0.0)


def test_rabbitmq_deprecated_queue_length_is_the_target() -> None:
    trigger = copy.deepcopy(RABBIT_TRIGGER)
    trigger["metadata"]["queueLength"] = "7"
    policy = policy_from_object(edited((("spec", "triggers"), [trigger])))
    assert policy.target_value == 7.0


BEHAVIOR_DEFAULTS = [
    # an empty behavior block: both directions get all of Kubernetes' defaults
    ({}, 0, 300, [("Pods", 4, 15), ("Percent", 100, 15)], [("Percent", 100, 15)]),
    # scaleDown given without a window: the controller's 300 s still applies
    (
        {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        0,
        300,
        [("Pods", 4, 15), ("Percent", 100, 15)],
        [("Pods", 1, 60)],
    ),
    # a window given without policies keeps the default policies
    (
        {"scaleUp": {"stabilizationWindowSeconds": 30}},
        30,
        300,
        [("Pods", 4, 15), ("Percent", 100, 15)],
        [("Percent", 100, 15)],
    ),
    # a key written without a value (a nil pointer in Go) is the default too
    ({"scaleDown": {"stabilizationWindowSeconds": None}}, 0, 300, None, None),
]


@pytest.mark.parametrize(("behavior", "up_window", "down_window", "up", "down"), BEHAVIOR_DEFAULTS)
def test_behavior_defaults(
    behavior: dict[str, Any],
    up_window: int,
    down_window: int,
    up: list[tuple[str, int, int]] | None,
    down: list[tuple[str, int, int]] | None,
) -> None:
    policy = policy_from_object(edited((BEHAVIOR, behavior)))
    assert policy.behavior is not None
    rules_up, rules_down = policy.behavior.scale_up, policy.behavior.scale_down
    assert (rules_up.stabilization_window_seconds, rules_down.stabilization_window_seconds) == (
        up_window,
        down_window,
    )
    assert rules_up.select_policy == rules_down.select_policy == "Max"  # selectPolicy default
    assert rules_up.tolerance == rules_down.tolerance == 0.1  # the cluster-wide 10 %

    def triples(policies: tuple[HpaPolicy, ...]) -> list[tuple[str, int, int]]:
        return [(p.type, p.value, p.period_seconds) for p in policies]

    if up is not None:
        assert triples(rules_up.policies) == up
    if down is not None:
        assert triples(rules_down.policies) == down


@pytest.mark.parametrize(
    ("quantity", "value"), [(0, 0.0), ("0.05", 0.05), ("50m", 0.05), ("5e-2", 0.05)]
)
def test_tolerance_is_a_quantity(quantity: Any, value: float) -> None:
    policy = policy_from_object(edited((BEHAVIOR, {"scaleUp": {"tolerance": quantity}})))
    assert policy.behavior is not None
    assert policy.behavior.scale_up.tolerance == pytest.approx(value)


def test_fields_the_rules_do_not_need_are_ignored() -> None:
    policy = policy_from_object(
        edited(
            (("spec", "scaleTargetRef", "envSourceContainerName"), "detector"),
            (("spec", "advanced", "restoreToOriginalReplicaCount"), True),
            (("spec", "advanced", "horizontalPodAutoscalerConfig", "name"), "hpa"),
            (("spec", "triggers", 0, "name"), "lag"),
            (("spec", "triggers", 0, "useCachedMetrics"), True),
            ((*TRIGGER_META, "useHttps"), "false"),
            (("metadata", "labels"), {"app": "x"}),
            (("status",), {"lastActiveTime": "2026-01-01T00:00:00Z"}),
        )
    )
    assert policy.target_value == 10.0


# Each refusal: the edit, and what the message must name. The file would mean something the
# local scaler does not do, or is not a valid ScaledObject at all.
REFUSALS = [
    # not a ScaledObject of KEDA's v1alpha1 API
    ((("apiVersion",), "keda.sh/v1"), "apiVersion"),
    # scaleTargetRef.name is required
    ((("spec", "scaleTargetRef", "name"), ...), "spec.scaleTargetRef.name"),
    # pollingInterval must be >= 1 (the CRD's minimum)
    ((("spec", "pollingInterval"), 0), "spec.pollingInterval"),
    # a trigger metadata value is a string: an unquoted number is a type error, as in the CRD
    (((*TRIGGER_META, "lagThreshold"), 32), "spec.triggers[0].metadata.lagThreshold"),
    # KEDA parses lagThreshold as an int64
    (((*TRIGGER_META, "lagThreshold"), "3.5"), "spec.triggers[0].metadata.lagThreshold"),
    # the stream is required
    (((*TRIGGER_META, "stream"), ...), "spec.triggers[0].metadata.stream"),
    # minReplicaCount must not exceed maxReplicaCount (KEDA's validation; max defaults to 100)
    ((("spec", "minReplicaCount"), 101), "minReplicaCount must not exceed maxReplicaCount"),
    # an unsupported scaler
    ((("spec", "triggers", 0, "type"), "kafka"), "spec.triggers[0].type"),
    # metricType Value changes the HPA formula: not modelled
    ((("spec", "triggers", 0, "metricType"), "Value"), "spec.triggers[0].metricType"),
    # fallback, idleReplicaCount, scalingModifiers and pause annotations: not modelled
    ((("spec", "fallback"), {"failureThreshold": 3, "replicas": 1}), "spec.fallback"),
    ((("spec", "idleReplicaCount"), 0), "spec.idleReplicaCount"),
    ((("spec", "advanced", "scalingModifiers"), {"formula": "x"}), "scalingModifiers"),
    (
        (("metadata", "annotations"), {"autoscaling.keda.sh/paused": "true"}),
        "autoscaling.keda.sh/paused",
    ),
    # two triggers: KEDA would take the max of both; the detector scales on one
    ((("spec", "triggers", 1), MINIMAL["spec"]["triggers"][0]), "spec.triggers"),
    # HPA policy periods are 1..1800 s
    (
        (BEHAVIOR, {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}}),
        "periodSeconds",
    ),
    # an empty policy list is refused by the HPA's validation
    ((BEHAVIOR, {"scaleDown": {"policies": []}}), "policies"),
    # selectPolicy is Max, Min or Disabled
    ((BEHAVIOR, {"scaleDown": {"selectPolicy": "Most"}}), "selectPolicy"),
]


@pytest.mark.parametrize(("edit", "named"), REFUSALS)
def test_refusals_name_the_field(edit: tuple[tuple[str | int, ...], Any], named: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_object(edited(edit), "deploy/keda/x.yaml")
    message = str(info.value)
    assert message.startswith("deploy/keda/x.yaml: ") and named in message, message


# RabbitMQ settings under which KEDA would read another number than the adapter's depth.
RABBIT_REFUSALS = [
    # amqp counts ready messages only: scale to zero with work in flight
    ({"protocol": "amqp"}, "protocol amqp"),
    # auto with the host hidden in a TriggerAuthentication: cannot tell, so say http
    ({"protocol": "auto"}, "protocol auto"),
    # ... auto with an amqp host is amqp
    ({"protocol": "auto", "host": "amqp://rabbit:5672/"}, "protocol amqp"),
    # ready messages only, by another switch
    ({"excludeUnacknowledged": "true"}, "excludeUnacknowledged"),
    # several queues summed
    ({"useRegex": "true"}, "useRegex"),
    # a rate mode: the local metric is a depth
    ({"mode": "MessageRate", "value": "10"}, "mode MessageRate"),
    # KEDA: value without mode
    ({"value": "10"}, "mode must be given"),
    # KEDA: queueLength together with mode/value
    ({"queueLength": "10", "mode": "QueueLength", "value": "10"}, "queueLength is deprecated"),
    # queueName is required
    ({"queueName": None}, "queueName"),
]


@pytest.mark.parametrize(("metadata", "named"), RABBIT_REFUSALS)
def test_rabbitmq_refusals(metadata: dict[str, str | None], named: str) -> None:
    trigger = copy.deepcopy(RABBIT_TRIGGER)
    for key, value in metadata.items():
        if value is None:
            del trigger["metadata"][key]
        else:
            trigger["metadata"][key] = value
    with pytest.raises(PolicyError, match=named):
        policy_from_object(edited((("spec", "triggers"), [trigger])))


def test_auto_protocol_with_an_http_host_is_http() -> None:
    trigger = copy.deepcopy(RABBIT_TRIGGER)
    trigger["metadata"].update(protocol="auto", host="http://rabbit:15672/")
    assert policy_from_object(edited((("spec", "triggers"), [trigger]))).broker == "rabbitmq"


def test_multi_document_file_picks_the_scaledobject() -> None:
    auth = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": {}}
    text = yaml.safe_dump_all([auth, MINIMAL, None])
    assert parse_policy(text).name == "d"


@pytest.mark.parametrize(
    ("documents", "named"),
    [
        # no ScaledObject at all
        ([{"kind": "TriggerAuthentication"}], "no ScaledObject"),
        # two: which one would the local scaler follow?
        ([MINIMAL, MINIMAL], "2 ScaledObjects"),
    ],
)
def test_a_policy_file_holds_exactly_one_scaledobject(
    documents: list[dict[str, Any]], named: str
) -> None:
    with pytest.raises(PolicyError, match=named):
        parse_policy(yaml.safe_dump_all(documents), "f.yaml")


def test_unreadable_files_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


# --- the real files in deploy/keda --------------------------------------------------------


@pytest.fixture(scope="module", params=["nats", "rabbitmq"])
def real(request: pytest.FixtureRequest) -> ScalingPolicy:
    return load_policy(policy_file(request.param))


def test_real_files_name_what_the_broker_adapters_use(real: ScalingPolicy) -> None:
    trigger = real.trigger
    if isinstance(trigger, NatsJetStreamTrigger):
        defaults = NatsSettings()
        assert (trigger.stream, trigger.consumer) == (defaults.stream, defaults.durable)
        assert trigger.account == "$G"
    else:
        assert isinstance(trigger, RabbitMQTrigger)
        assert trigger.queue_name == RabbitSettings().queue
        assert trigger.protocol == "http"
    assert (real.name, real.namespace, real.target_ref.name) == (
        "tripwire-detector",
        "tripwire",
        "tripwire-detector",
    )


def test_real_files_keep_the_relations_their_comments_state(real: ScalingPolicy) -> None:
    ack_wait = NatsSettings.model_fields["ack_wait_s"].default
    stop_timeout = DetectorSettings.model_fields["stop_timeout_s"].default
    batch = DetectorSettings.model_fields["batch_size"].default
    # scale-to-zero never races work in flight: cooldown >= ack wait + the bounded stop
    assert real.cooldown_period_s >= ack_wait + stop_timeout
    # KEDA only acts on polls: the cooldown is a whole number of them
    assert real.cooldown_period_s % real.polling_interval_s == 0
    assert real.min_replicas == 0 and real.activation_value == 0.0
    # the target is whole batches, and the RabbitMQ prefetch
    assert real.target_value % batch == 0
    assert real.target_value == RabbitSettings.model_fields["prefetch"].default
    assert real.behavior is not None
    # the peak is held at least one ack wait
    assert real.behavior.scale_down.stabilization_window_seconds >= ack_wait


def test_both_overlays_scale_alike() -> None:
    nats, rabbit = load_policy(policy_file("nats")), load_policy(policy_file("rabbitmq"))

    def numbers(p: ScalingPolicy) -> tuple[Any, ...]:
        return (
            p.polling_interval_s,
            p.cooldown_period_s,
            p.initial_cooldown_period_s,
            p.min_replicas,
            p.max_replicas,
            p.target_value,
            p.activation_value,
            p.behavior,
        )

    assert numbers(nats) == numbers(rabbit)


def test_real_policy_replays_a_burst(real: ScalingPolicy) -> None:
    """A 100-frame backlog from t=5 s to t=55 s, polled every 5 s, through the real numbers.

    t=5 activation 0 -> 1; t=10 the HPA wants ceil(100/32) = 4 but may only double -> 2;
    t=25 the scale-up period (15 s) is over -> 4; the burst's last poll is t=55; the 30 s
    window holds 4 until t=85 -> 2 (-50 % per 30 s); t=115 -> 1; lastActiveTime 55 +
    cooldown 60 is strictly past at t=120 -> 0.
    """
    scaler = Scaler(real, created_at=0.0)
    timeline = []
    for now in range(0, 200):
        if scaler.poll_due(now):
            before = scaler.replicas
            after = scaler.decide(now, 100 if 5 <= now <= 55 else 0)
            if after != before:
                timeline.append((now, after))
    assert timeline == [(5, 1), (10, 2), (25, 4), (85, 2), (115, 1), (120, 0)]
