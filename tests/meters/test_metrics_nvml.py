"""The NVML source against this machine's real driver: figures with a GPU, a reason without."""

from __future__ import annotations

import shutil
from pathlib import Path

from tripwire.meters.gpu_nvml import NvmlGpu

# The driver's control device is there exactly when an NVIDIA driver is loaded.
HAS_NVIDIA = Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def test_nvml_reads_the_gpu_or_says_why_not() -> None:
    gpu = NvmlGpu(lambda: {})
    try:
        report = gpu.read()
        if not HAS_NVIDIA:
            # No driver here: the real pynvml call fails and the source says so, no crash.
            assert not gpu.available
            assert not report.available and report.readings == []
            assert report.error is not None and "NVML" in report.error
            assert gpu.read().error == report.error  # stays unavailable, never raises
            return
        assert gpu.available, gpu.error
        assert report.available
        metrics = {(r.metric, r.labels.get("device")) for r in report.readings}
        for dev in gpu.devices:
            index = str(dev.index)
            assert ("power_watts", index) in metrics
            assert ("gpu_memory_used_bytes", index) in metrics
            assert ("gpu_utilization_ratio", index) in metrics
        power = [r for r in report.readings if r.metric == "power_watts"]
        assert all(r.kind == "measured" and 0 < r.value < 2000 for r in power)
    finally:
        gpu.close()
    assert gpu.read().available is False  # closed: unavailable, not a crash
