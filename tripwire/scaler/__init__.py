"""The local scaler's policy and rules: KEDA's semantics, read from deploy/keda/.

- ``policy``: a ScaledObject file -> ``ScalingPolicy`` (KEDA's and the HPA's defaults);
- ``rules``: ``Scaler``, the replica decisions of KEDA plus the HPA over injected time;
- ``hpa``: the HPA's arithmetic as pure functions.

The process executor (starting and stopping detector workers) builds on ``Scaler``.
"""

from tripwire.scaler.behavior import HpaBehavior, HpaPolicy, ScaleDownRules, ScaleUpRules
from tripwire.scaler.policy import (
    PolicyError,
    ScalingPolicy,
    load_policy,
    parse_policy,
    policy_file,
    policy_from_object,
)
from tripwire.scaler.rules import Decision, Scaler, cooldown_passed, is_active
from tripwire.scaler.triggers import NatsJetStreamTrigger, RabbitMQTrigger, Trigger

__all__ = [
    "Decision",
    "HpaBehavior",
    "HpaPolicy",
    "NatsJetStreamTrigger",
    "PolicyError",
    "RabbitMQTrigger",
    "ScaleDownRules",
    "ScaleUpRules",
    "Scaler",
    "ScalingPolicy",
    "Trigger",
    "cooldown_passed",
    "is_active",
    "load_policy",
    "parse_policy",
    "policy_file",
    "policy_from_object",
]
