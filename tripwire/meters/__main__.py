"""``python -m tripwire.meters``: sample this machine for a while and print each sample.

Handy to see what a machine offers (NVML, RAPL or the estimate) before a benchmark::

    python -m tripwire.meters --seconds 5 --interval 1 --pid detector=1234 --prometheus
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from tripwire.meters.sampler import Sample, Sampler
from tripwire.meters.settings import CpuEstimateSettings, MetricsSettings


def _pids(values: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for value in values:
        role, _, pid = value.partition("=")
        if not pid.isdigit():
            raise SystemExit(f"--pid {value!r}: expected ROLE=PID")
        out.setdefault(role, []).append(int(pid))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tripwire.meters", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to sample")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--pid", action="append", default=[], help="ROLE=PID to follow")
    parser.add_argument("--jsonl", type=Path, help="also append the samples to this file")
    parser.add_argument("--tdp-per-core", type=float, default=10.0, help="W per CPU (estimate)")
    parser.add_argument("--idle-w", type=float, default=0.0, help="idle W charged (estimate)")
    parser.add_argument("--uss-every", type=int, default=1, help="USS every Nth sample")
    parser.add_argument("--prometheus", action="store_true", help="print /metrics text at end")
    args = parser.parse_args(argv)

    processes = _pids(args.pid) or {"sampler": [os.getpid()]}
    settings = MetricsSettings(
        interval_s=args.interval,
        jsonl=args.jsonl,
        uss_every=args.uss_every,
        cpu=CpuEstimateSettings(tdp_per_core_w=args.tdp_per_core, idle_w=args.idle_w),
    )
    sampler = Sampler.from_settings(settings, processes=lambda: processes)

    def show(sample: Sample) -> None:
        print(json.dumps(sample.to_json(), separators=(",", ":")), flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(args.seconds, stop.set)
        await sampler.run(stop, show)

    try:
        asyncio.run(run())
    finally:
        sampler.close()
    if args.prometheus:
        sys.stdout.write(sampler.prometheus_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
