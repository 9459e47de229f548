"""Camera config: table-driven validation cases, each with the error it must name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tripwire.camera_config import load_config, parse_config
from tripwire.errors import ConfigError
from tripwire.tokens import hash_token

HASH = hash_token("t")


def cam(**extra: Any) -> dict[str, Any]:
    return {"id": "cam-1", "token_hash": HASH, **extra}


INVALID = [
    # A typo in a motion key is reported at its full path.
    ({"cameras": [cam(motion={"treshold": 3})]}, "cameras[0].motion.treshold"),
    # Unknown top-level key.
    ({"camras": []}, "camras"),
    # Typo inside the defaults block is reported there, not at every camera.
    ({"defaults": {"motion": {"blurr": 3}}}, "defaults.motion.blurr"),
    # Camera ids become subject tokens: no dots or capitals.
    ({"cameras": [cam(id="Cam.1")]}, "cameras[0].id"),
    # A plain token instead of its hash.
    ({"cameras": [cam(token_hash="hunter2")]}, "cameras[0].token_hash"),
    # Out-of-range value.
    ({"cameras": [cam(motion={"threshold": 0})]}, "cameras[0].motion.threshold"),
    # Even blur kernel.
    ({"cameras": [cam(motion={"blur": 4})]}, "cameras[0].motion.blur"),
    # A mask needs three points in 0..1.
    ({"cameras": [cam(masks=[[[0, 0], [1, 1]]])]}, "cameras[0].masks[0]"),
    ({"cameras": [cam(masks=[[[0, 0], [1, 1], [1.5, 0]]])]}, "cameras[0].masks[0][2][0]"),
    # The same id twice.
    ({"cameras": [cam(), cam()]}, "appears twice"),
]


@pytest.mark.parametrize("data,where", INVALID, ids=[w for _, w in INVALID])
def test_invalid_configs_name_the_path(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cams.yaml")
    assert where in str(err.value) and str(err.value).startswith("cams.yaml: ")


def test_defaults_merge_under_camera_values() -> None:
    cfg = parse_config(
        {
            "defaults": {"motion": {"threshold": 30, "blur": 7}},
            "cameras": [cam(motion={"blur": 3}), cam(id="cam-2")],
        }
    )
    one, two = cfg.cameras
    assert (one.motion.threshold, one.motion.blur) == (30, 3)
    assert (two.motion.threshold, two.motion.blur) == (30, 7)
    assert cfg.camera("cam-2") is two and cfg.camera("nope") is None


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(f"cameras:\n  - id: cam-1\n    token_hash: '{HASH}'\n")
    assert load_config(good).cameras[0].id == "cam-1"
    assert load_config(None).cameras == []
