"""Alert rules of the camera config file: which model classes raise which alert.

```yaml
alerts:
  - kind: fire
    classes: [fire, smoke]
    min_confidence: 0.4
    min_frames: 2          # consecutive frames of one camera that must show it
    cooldown_s: 120        # one incident, one alert
  - kind: accident
    classes: [Accident]    # a classify model's top-1 label counts as a whole-frame match
  - kind: intrusion
    classes: [person]
    zones: [driveway]      # only boxes whose foot point lies in one of these zones
    cameras: [cam-1]       # default: every camera
    model: coco            # read only this model's results (models: section); unset = any
```
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pydantic import BaseModel, ConfigDict, Field


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="alert kind, e.g. fire")
    classes: list[str] = Field(min_length=1, description="model class names that match")
    min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="lowest confidence that counts")
    min_frames: int = Field(1, ge=1, le=1000, description="consecutive matching frames needed")
    cooldown_s: float = Field(60.0, ge=0.0, le=86_400, description="quiet time after an alert")
    zones: list[str] = Field(
        default_factory=list, description="restrict to boxes in these camera zones (by name)"
    )
    cameras: list[str] = Field(default_factory=list, description="cameras it applies to; [] = all")
    model: str | None = Field(
        None, description="read only the results of this model (by name); unset = any model"
    )

    def applies_to(self, camera: str) -> bool:
        return not self.cameras or camera in self.cameras

    def reads(self, model: str) -> bool:
        """Whether results of the model named ``model`` count for this rule."""
        return self.model is None or self.model == model


def unknown_classes(
    rules: Sequence[AlertRule], labels: Collection[str], model: str | None = None
) -> list[str]:
    """One line per rule class that a model with ``labels`` can never produce (a typo, or a
    rule meant for another model): such a rule would never fire, so it is a config error.

    With ``model`` (a name of the models section), only the rules that name that model are
    checked: a rule for any model may match another model's labels."""
    problems = []
    for i, rule in enumerate(rules):
        if model is not None and rule.model != model:
            continue
        missing = [c for c in rule.classes if c not in labels]
        if missing:
            problems.append(f"alerts[{i}] ({rule.kind}): {missing} are not labels of the model")
    return problems
