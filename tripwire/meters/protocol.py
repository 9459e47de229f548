"""The one interface every metrics source implements, and what a source returns.

A source is read once per sample. It returns a :class:`SourceReport`: either a list of
:class:`Reading` values, or ``available=False`` with the reason (no GPU, no driver, RAPL not
readable). A source never raises out of the sampler: the sampler turns an exception into an
unavailable report that names it.

Every reading says whether it was ``measured`` (a hardware counter or the kernel's own
accounting) or ``estimated`` (a model), and ``method`` says how, so that a power figure in a
report can never pass an estimate off as a measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Kind = Literal["measured", "estimated"]

# {role: [pid, ...]}, e.g. {"gateway": [812], "detector": [901, 907], "standby": [850]}.
ProcessMap = Mapping[str, Sequence[int]]
ProcessLister = Callable[[], ProcessMap]


@dataclass(frozen=True)
class Reading:
    """One value: ``metric`` is the Prometheus name without the ``tripwire_`` prefix."""

    metric: str
    value: float
    kind: Kind
    method: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "kind": self.kind,
            "method": self.method,
            "labels": dict(self.labels),
        }


@dataclass
class SourceReport:
    """What one source said in one sample."""

    source: str
    available: bool
    readings: list[Reading] = field(default_factory=list)
    error: str | None = None
    read_s: float = 0.0  # wall time this source took to read

    @classmethod
    def unavailable(cls, source: str, error: str) -> SourceReport:
        return cls(source=source, available=False, error=error)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "available": self.available,
            "read_s": round(self.read_s, 6),
            "readings": [r.to_json() for r in self.readings],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@runtime_checkable
class Source(Protocol):
    """A metrics source: a name, a read per sample, a close."""

    name: str

    def read(self) -> SourceReport:
        """Read now; rates and deltas are over the time since the previous read."""
        ...

    def close(self) -> None:
        """Release what the source holds (the NVML handle); idempotent."""
        ...


def role_of(processes: ProcessMap) -> dict[int, str]:
    """Invert a process map: pid -> role."""
    return {pid: role for role, pids in processes.items() for pid in pids}
