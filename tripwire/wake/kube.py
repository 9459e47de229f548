"""The wake controller's API calls, and nothing more than its Role allows.

One check of a Deployment: read its ``/scale`` (done if replicas > 0), read the ScaledObject of
the same name (done if paused), then patch ``/scale`` to 1 with the ``resourceVersion`` just
read, so the patch is refused (409) if anything changed the count in between: the controller
never overwrites a count KEDA or a person set, and so never scales down.

The ``kubernetes`` client is synchronous: each check runs in a worker thread.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from tripwire.cluster import ClusterError

log = logging.getLogger(__name__)

# KEDA's pause annotations: paused-replicas holds the count at N, paused (v2.13+) at the current
# count. Either way KEDA does not scale, and neither may we.
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
PAUSED = "autoscaling.keda.sh/paused"
REQUEST_TIMEOUT_S = 5.0
# A 409 means the object changed since we read it: most often the Deployment controller
# writing status just after a scale change (same resourceVersion as /scale), sometimes KEDA.
# Read again after a short pause, a few times at most.
CONFLICT_RETRIES = 5
CONFLICT_PAUSE_S = 0.05


class Outcome(enum.Enum):
    SCALED = "scaled"  # 0 -> 1: this check patched /scale
    RUNNING = "running"  # replicas > 0 already: nothing to do
    PAUSED = "paused"  # the ScaledObject is paused: KEDA's count stands
    CHANGED = "changed"  # the count kept changing under us (409 each time): leave it to KEDA


def is_paused(annotations: Mapping[str, str] | None) -> bool:
    """True when a ScaledObject's annotations pause KEDA (the value of ``paused`` must be true)."""
    annotations = annotations or {}
    if PAUSED_REPLICAS in annotations:
        return True
    # Any spelling of true that Go's strconv.ParseBool accepts: when in doubt, leave it paused.
    return annotations.get(PAUSED, "").strip().lower() in {"1", "t", "true"}


def load_client(kubeconfig: str | None) -> Any:  # the client's ApiClient
    """An ApiClient from ``kubeconfig``, else the in-cluster service account, else ~/.kube."""
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise ClusterError(
            "tripwire cluster needs the kubernetes client: pip install -e '.[deploy]'"
        ) from exc
    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            return config.new_client_from_config()
    except Exception as exc:  # the loader raises several kinds; say which config failed
        raise ClusterError(f"no usable kubeconfig: {exc}") from None


class KubeScaler:
    """Reads and patches ``deployments/scale`` (and reads ScaledObjects) in one namespace."""

    def __init__(
        self, api_client: Any, namespace: str, on_request: Callable[[str], None] | None = None
    ) -> None:
        from kubernetes import client

        self.namespace = namespace
        self._apps = client.AppsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._api_client = api_client
        self._on_request = on_request or (lambda _verb: None)

    def replicas(self, deployment: str) -> tuple[int, str]:
        """spec.replicas of the Deployment's /scale (0 is omitted by the server) and its version."""
        scale = self._request(
            "get_scale",
            deployment,
            self._apps.read_namespaced_deployment_scale,
            deployment,
            self.namespace,
        )
        return int(scale.spec.replicas or 0), str(scale.metadata.resource_version)

    def paused(self, scaled_object: str) -> bool:
        """Whether the ScaledObject is paused; no ScaledObject (or no KEDA) is not paused."""
        try:
            obj = self._request(
                "get_scaledobject",
                scaled_object,
                self._custom.get_namespaced_custom_object,
                "keda.sh", "v1alpha1", self.namespace, "scaledobjects", scaled_object,
            )  # fmt: skip
        except _Status as status:
            if status.code == 404:  # nothing autoscales it: nothing to fight
                return False
            raise
        return is_paused(obj.get("metadata", {}).get("annotations"))

    def wake(self, deployment: str, scaled_object: str) -> Outcome:
        """One check: 0 -> 1 unless running or paused. Raises ClusterError on API failures."""
        for attempt in range(CONFLICT_RETRIES):
            if attempt:
                time.sleep(CONFLICT_PAUSE_S * attempt)  # runs in a worker thread
            replicas, version = self.replicas(deployment)
            if replicas > 0:
                return Outcome.RUNNING
            if self.paused(scaled_object):
                return Outcome.PAUSED
            body = {"metadata": {"resourceVersion": version}, "spec": {"replicas": 1}}
            try:
                self._request(
                    "patch_scale",
                    deployment,
                    self._apps.patch_namespaced_deployment_scale,
                    deployment,
                    self.namespace,
                    body,
                )
            except _Status as status:
                if status.code == 409:  # changed since we read it: read it again
                    continue
                raise
            return Outcome.SCALED
        return Outcome.CHANGED

    def _request(self, verb: str, name: str, method: Callable[..., Any], *args: Any) -> Any:
        """One API call on ``name``, counted; a failure becomes a ClusterError that says what."""
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        self._on_request(verb)
        what = f"{self.namespace}/{name}: {verb}"
        try:
            # Bounded: a wake that waits longer than this is no faster than KEDA's next poll.
            return method(*args, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            raise _Status(f"{what}: HTTP {exc.status} {exc.reason}", int(exc.status or 0)) from None
        except HTTPError as exc:  # connection refused, TLS, timeouts (retries used up)
            raise ClusterError(f"{what}: {exc}") from None

    def close(self) -> None:
        self._api_client.close()


class _Status(ClusterError):
    """The API server answered with an error status (``code``)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
