"""The keep-alive setting of a policy file: annotations on the ScaledObject.

KEDA ignores annotations it does not know and the CRD accepts any, so the same file still
applies on a cluster (where KEDA keeps its fixed ``cooldownPeriod``; see README, "Keep-alive
policies"). Keys, all optional, under ``keepalive.tripwire.dev/``::

    keepalive.tripwire.dev/policy: histogram      # fixed (default) | histogram | break-even
    keepalive.tripwire.dev/profile: h200          # break-even: the device power profile
    keepalive.tripwire.dev/min-window-s: "15"     # floor of a learnt window

An unknown key under the prefix or a bad value is an error naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ANNOTATION_PREFIX = "keepalive.tripwire.dev/"

Policy = Literal["fixed", "histogram", "break-even"]


class KeepAliveSpec(BaseModel):
    """Which keep-alive policy the scaler runs, and its parameters (defaults in the fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Policy = Field("fixed", description="fixed = the file's cooldownPeriod, as KEDA")
    profile: str | None = Field(
        None, description="break-even: power profile name or path (resident_w, cold_start_j)"
    )
    bin_s: float = Field(10.0, gt=0, description="histogram: bin width, s")
    range_s: float = Field(4 * 3600.0, gt=0, description="histogram: longest gap binned, s")
    head_percentile: float = Field(5.0, ge=0, le=100, description="histogram: pre-warm")
    tail_percentile: float = Field(99.0, ge=0, le=100, description="histogram: keep-alive")
    margin: float = Field(0.1, ge=0, lt=1, description="histogram: windows widened by this")
    cv_threshold: float = Field(
        2.0, ge=0, description="histogram: bin counts' CV below this = not representative"
    )
    max_out_of_range: float = Field(
        0.5, ge=0, le=1, description="histogram: more gaps beyond range_s = not representative"
    )
    min_gaps: int = Field(10, ge=1, description="gaps seen before a learnt window is used")
    history: int = Field(500, ge=1, description="break-even: most recent gaps kept")
    cold_start_s: float = Field(
        8.0,
        ge=0,
        description="break-even: a start holds the device this long before it serves "
        "(charged at resident_w on top of the profile's cold_start_j)",
    )
    cold_start_price_j: float = Field(
        0.0,
        ge=0,
        description="break-even: J a cold start's wait is worth to the operator (0: energy only)",
    )
    min_window_s: float = Field(
        15.0, ge=0, description="floor of a learnt window, s (a quiet poll mid-event is not idle)"
    )
    max_window_s: float | None = Field(None, gt=0, description="cap of a learnt window, s")

    @model_validator(mode="after")
    def _consistent(self) -> KeepAliveSpec:
        if self.policy == "break-even" and not self.profile:
            raise ValueError(f"policy break-even needs {ANNOTATION_PREFIX}profile (e.g. h200)")
        if self.head_percentile >= self.tail_percentile:
            raise ValueError("head-percentile must be below tail-percentile")
        if self.max_window_s is not None and self.max_window_s < self.min_window_s:
            raise ValueError("max-window-s must not be below min-window-s")
        return self


def spec_from_annotations(annotations: Mapping[str, str]) -> KeepAliveSpec:
    """The spec the annotations give; ValueError names the annotation at fault."""
    fields = KeepAliveSpec.model_fields
    values: dict[str, str] = {}
    for key, value in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        name = key.removeprefix(ANNOTATION_PREFIX).replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(n.replace("_", "-") for n in fields))
            raise ValueError(f"{key}: unknown keep-alive setting (known: {known})")
        values[name] = value
    try:
        return KeepAliveSpec.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]).replace("_", "-")
            key = f"{ANNOTATION_PREFIX}{where}" if where else "annotations"
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(lines)) from None
