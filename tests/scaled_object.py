"""A minimal KEDA ScaledObject on a NATS JetStream trigger, as the dict a manifest parses to."""

from __future__ import annotations

from typing import Any


def nats_scaled_object(name: str, **trigger_metadata: str) -> dict[str, Any]:
    """The ScaledObject ``name`` in namespace tripwire, with ``trigger_metadata`` added to the
    trigger's (the lag thresholds, say)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "tripwire"},
        "spec": {
            "scaleTargetRef": {"name": "tripwire-detector"},
            "triggers": [
                {
                    "type": "nats-jetstream",
                    "metadata": {
                        "natsServerMonitoringEndpoint": "nats:8222",
                        "account": "$G",
                        "stream": "S",
                        "consumer": "c",
                        **trigger_metadata,
                    },
                }
            ],
        },
    }
