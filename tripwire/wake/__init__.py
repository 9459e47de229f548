"""The wake controller (``tripwire cluster wake``): push activation on a cluster.

KEDA notices the first motion frame only at its next poll of the queue depth (up to one
``pollingInterval`` late). The gateway already publishes a wake signal (``tripwire.wake``)
once the frame is stored; this controller hears it and sets the detector Deployment's
``/scale`` from 0 to 1 at once. KEDA owns the count again from its next poll.

- ``kube``: the three API calls (read the scale, read the ScaledObject, patch the scale);
- ``controller``: per-Deployment coalescing of wakes into rate-limited checks, and metrics;
- ``service``: the process: broker subscription, /healthz, /readyz, /metrics.
"""
