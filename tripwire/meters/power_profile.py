"""Device power profiles: the model a figure comes from where no counter measures it.

One YAML file per device in ``tripwire/meters/profiles/`` (shipped in the package). Each
number has its source in ``sources``; a number that is an assumption says so. The model
splits a device's energy into four parts, so that a report can show what scale-to-zero saves
(the held context and the work) and what it cannot (the bare floor of a powered card):

    idle_floor  = idle_floor_w x window                  (drawn with no process on the device)
    resident    = resident_w x seconds a model is held    (CUDA context + weights, idle)
    inference   = active_w x busy seconds                 (above the held level)
    cold_start  = cold_start_j x worker starts            (context creation + weights load)

``kind: cpu`` profiles have no per-frame time or cold-start energy of their own: busy seconds
and cold starts are the detector's CPU-seconds measured from /proc, charged at ``active_w``
per busy CPU.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tripwire.errors import ConfigError

FIELDS = (
    "idle_floor_w",
    "resident_w",
    "active_w",
    "inference_s_per_frame",
    "cold_start_j",
    "resident_mib",
)


class ProfileError(ConfigError):
    """A profile is unknown or malformed; the message names it."""


class PowerProfile(BaseModel):
    """One device's power model; every number has a line in ``sources``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="the profile's name, as given to --profile")
    device: str = Field(min_length=1, description="the hardware it describes")
    kind: Literal["gpu", "cpu"]
    idle_floor_w: float = Field(ge=0, description="bare idle, no process on the device, W")
    resident_w: float = Field(ge=0, description="over the floor while a model is held idle, W")
    active_w: float = Field(ge=0, description="over the held level while inferring, W")
    inference_s_per_frame: float | None = Field(
        None, gt=0, description="device time per frame; None: measured CPU-seconds (cpu kind)"
    )
    cold_start_j: float | None = Field(
        None, ge=0, description="energy of one worker start; None: measured (cpu kind)"
    )
    resident_mib: float = Field(ge=0, description="device memory one replica holds, MiB")
    sources: dict[str, str]

    @model_validator(mode="after")
    def _every_number_sourced(self) -> PowerProfile:
        missing = [f for f in FIELDS if not self.sources.get(f)]
        if missing:
            raise ValueError(f"no source for {', '.join(missing)}")
        if self.kind == "gpu" and (self.inference_s_per_frame is None or self.cold_start_j is None):
            raise ValueError("a gpu profile needs inference_s_per_frame and cold_start_j")
        return self

    def split_j(
        self, window_s: float, held_s: float, frames: int, cold_starts: int
    ) -> dict[str, float]:
        """The modelled split above for one device (gpu kind): J per part and ``total``."""
        if self.inference_s_per_frame is None or self.cold_start_j is None:
            raise ValueError(
                f"profile {self.name}: a cpu profile's energy is measured, not modelled"
            )
        out = {
            "idle_floor": self.idle_floor_w * window_s,
            "resident": self.resident_w * held_s,
            "inference": self.active_w * self.inference_s_per_frame * frames,
            "cold_start": self.cold_start_j * cold_starts,
        }
        out["total"] = sum(out.values())
        return out


def _folder() -> Path:
    return Path(str(resources.files("tripwire.meters") / "profiles"))


def profile_names() -> list[str]:
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def load_profile(name_or_path: str) -> PowerProfile:
    """A shipped profile by name (``v100``) or a YAML file of the same shape by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _folder() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ProfileError(
                f"no power profile {name_or_path!r}: shipped ones are {', '.join(profile_names())}"
            )
    try:
        return PowerProfile.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ProfileError(f"power profile {path}: {exc}") from exc
