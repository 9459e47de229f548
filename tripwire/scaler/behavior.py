"""The HPA ``behavior`` block of a ScaledObject, with the defaults Kubernetes fills in.

``advanced.horizontalPodAutoscalerConfig.behavior`` is copied by KEDA into the HPA it creates;
the API server then fills every field left out (``GenerateHPAScaleUpRules`` /
``GenerateHPAScaleDownRules``), and the controller uses its own flags for the rest (scale-down
stabilization 300 s, tolerance 0.1). Those defaults live here, so a file that leaves a field
out behaves the same under both executors.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# kube-controller-manager flags, as shipped (--horizontal-pod-autoscaler-tolerance and
# --horizontal-pod-autoscaler-downscale-stabilization).
DEFAULT_TOLERANCE = 0.1
DEFAULT_DOWNSCALE_STABILIZATION_S = 300

# A resource.Quantity, as the CRD's pattern for `tolerance` allows it.
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_SUFFIX = {
    "": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
    "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


def parse_quantity(value: object) -> float:
    """A Kubernetes quantity (``0.05``, ``"50m"``, ``"5e-2"``) as a float."""
    if isinstance(value, bool):
        raise ValueError("a quantity, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a number or a quantity string such as '50m'")
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a quantity")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in {"e", "E"}:
        return float(number + suffix)
    return float(number) * _SUFFIX[suffix]


class _Camel(BaseModel):
    # KEDA's own fields we do not model are ignored here; tests/deploy/test_keda_manifests.py
    # validates the whole object against the CRD.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class _NilIsDefault(_Camel):
    @model_validator(mode="before")
    @classmethod
    def _nil_is_default(cls, data: Any) -> Any:
        # A key written without a value is a nil pointer in Go, i.e. "use the default".
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class HpaPolicy(_Camel):
    """One HPA scaling policy: change by ``value`` pods or percent per ``period_seconds``."""

    type: Literal["Pods", "Percent"] = Field(description="Pods: absolute; Percent: relative")
    value: int = Field(gt=0, description="pods or percent allowed per period")
    period_seconds: int = Field(gt=0, le=1800, description="the window the policy holds for")


class ScalingRules(_NilIsDefault):
    """``scaleUp`` or ``scaleDown``: stabilization window, policies, how to pick, tolerance."""

    stabilization_window_seconds: int = Field(ge=0, le=3600, description="window of past advice")
    select_policy: Literal["Max", "Min", "Disabled"] = Field(
        "Max", description="Max: the policy allowing most change; Min: least; Disabled: none"
    )
    policies: tuple[HpaPolicy, ...] = Field(min_length=1, description="rate limits")
    tolerance: float = Field(
        DEFAULT_TOLERANCE, ge=0.0, description="no rescale within this ratio of the target"
    )

    @field_validator("tolerance", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> float:
        return parse_quantity(value)

    def longest_period(self) -> int:
        """The longest policy period: older scale events no longer limit anything."""
        return max(policy.period_seconds for policy in self.policies)


class ScaleUpRules(ScalingRules):
    """Scale-up rules; defaults: no stabilization, +4 pods or +100 % per 15 s, whichever is more."""

    stabilization_window_seconds: int = Field(0, ge=0, le=3600, description="window of past advice")
    policies: tuple[HpaPolicy, ...] = Field(
        (
            HpaPolicy(type="Pods", value=4, period_seconds=15),
            HpaPolicy(type="Percent", value=100, period_seconds=15),
        ),
        min_length=1,
        description="rate limits",
    )


class ScaleDownRules(ScalingRules):
    """Scale-down rules; defaults: 300 s stabilization, up to 100 % of the pods per 15 s."""

    stabilization_window_seconds: int = Field(
        DEFAULT_DOWNSCALE_STABILIZATION_S, ge=0, le=3600, description="window of past advice"
    )
    policies: tuple[HpaPolicy, ...] = Field(
        (HpaPolicy(type="Percent", value=100, period_seconds=15),),
        min_length=1,
        description="rate limits",
    )


class HpaBehavior(_NilIsDefault):
    """The HPA behavior block; a direction left out gets all of its defaults."""

    scale_up: ScaleUpRules = Field(default_factory=ScaleUpRules, description="scaling out")
    scale_down: ScaleDownRules = Field(default_factory=ScaleDownRules, description="scaling in")
