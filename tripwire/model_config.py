"""The ``models:`` section of the camera config file: several detector models on one stream.

```yaml
models:
  - name: coco                       # a-z 0-9 -, at most 30: used in consumer, queue and k8s names
    weights: /models/yolov8n_int8.tflite
    task: detect                     # detect | classify; unset = from the weights
    labels: [person, car, bus]       # optional: rule classes are checked against these
  - name: accident
    weights: /models/accident-cls.pt
    task: classify
    device: cpu
    batch: 4
    imgsz: 224
    cameras: [cam-1]                 # serves only these cameras ([] = every camera)
    zones: [crossing]                # only frames whose motion touches one of these zones
    scaling: {max_replicas: 2}       # the rest from the shipped ScaledObject
    max_queue: 500                   # RabbitMQ only: its queue's x-max-length (NATS refuses it)
```

Every model gets every motion frame of the cameras it serves, once (its own durable consumer
on NATS, its own queue on RabbitMQ), runs in its own detector pool scaled from zero on its
own backlog, and writes results that carry its name. Without a ``models:`` section there is
exactly one model, :data:`DEFAULT_MODEL`, built from the detector's settings as before.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "default"
MODEL_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,29}$"


class ScalingOverrides(BaseModel):
    """A model's own scaling numbers; unset ones are the shipped ScaledObject's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int | None = Field(None, ge=0, le=100, description="minReplicaCount")
    max_replicas: int | None = Field(None, ge=1, le=100, description="maxReplicaCount")
    lag_threshold: int | None = Field(
        None, ge=1, le=1_000_000, description="backlog per replica (lagThreshold / value)"
    )
    activation_threshold: int | None = Field(
        None, ge=0, le=1_000_000, description="active iff backlog > this"
    )
    polling_interval_s: int | None = Field(None, ge=1, le=3600, description="pollingInterval")
    cooldown_period_s: int | None = Field(None, ge=0, le=86_400, description="cooldownPeriod")


class ModelConfig(BaseModel):
    """One detector model served by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=MODEL_NAME_PATTERN, description="a-z 0-9 -, 1-30, starts a-z")
    weights: str = Field(min_length=1, description=".pt/.onnx/.tflite weights or a .yaml")
    task: str | None = Field(
        None, pattern=r"^(detect|classify)$", description="unset = from the weights"
    )
    device: str = Field("auto", min_length=1, description="auto, cpu, cuda:0, ...")
    batch: int = Field(8, ge=1, le=256, description="frames per inference call at most")
    imgsz: int | None = Field(None, ge=32, le=4096, description="unset = training size")
    labels: list[str] | None = Field(
        None, description="the classes it can produce; rule classes are checked against them"
    )
    cameras: list[str] = Field(default_factory=list, description="cameras served; [] = all")
    zones: list[str] = Field(
        default_factory=list, description="only frames whose motion touches one of these zones"
    )
    scaling: ScalingOverrides = Field(default_factory=ScalingOverrides)
    max_queue: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="RabbitMQ: frames its queue holds (x-max-length), the oldest dropped beyond; "
        "unset = TRIPWIRE_BROKER__RABBITMQ__MAX_LENGTH. NATS refuses it: one stream, bounded "
        "as a whole",
    )

    def serves(self, camera: str) -> bool:
        return not self.cameras or camera in self.cameras


def family(weights: str) -> str:
    """The import set a worker of these weights needs: models of one family share one prefork
    standby. Every format the detector loads goes through ultralytics and torch (a .tflite
    export adds LiteRT at model load, after the fork), so today there is one family."""
    del weights
    return "ultralytics"


def max_queue_on_nats(models: list[str]) -> str:
    """Why a NATS broker refuses models that set ``max_queue``."""
    return (
        f"models {', '.join(models)}: max_queue bounds a model's own RabbitMQ queue; on NATS "
        "every model reads one motion stream, bounded as a whole (TRIPWIRE_BROKER__NATS__"
        "STREAM_MAX_MSGS, STREAM_MAX_BYTES, STREAM_MAX_AGE_S): remove max_queue or use RabbitMQ"
    )
