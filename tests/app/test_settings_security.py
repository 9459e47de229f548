"""Settings that cannot leak or be silently wrong: redacted errors and log lines, unknown
``TRIPWIRE_*`` variables, credential-less AMQP URLs in prod, a user without a password."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tripwire.app.cli import main
from tripwire.brokers.rabbitmq import RabbitBroker
from tripwire.brokers.settings import RabbitSettings
from tripwire.errors import ConfigError
from tripwire.logs import FORMAT, RedactingFormatter, add_secret
from tripwire.settings import DetectorSettings, GatewaySettings

REPO = Path(__file__).resolve().parents[2]
SECRET = "TopSecret99"
S3_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzzQ3"
GATEWAY = [sys.executable, "-m", "tripwire.app.cli", "gateway", "--port", "0", "--broker"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("TRIPWIRE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))


# Each case: (what it checks, command, environment, words the one-line error must contain)
LEAKS = [
    # a URL with a password and the wrong scheme: pydantic echoed the whole dict
    (
        "broker url, bad scheme",
        ["gateway"],
        {"TRIPWIRE_BROKER__URL": f"http://tripwire:{SECRET}@h"},
        "broker: Value error, url must start with nats://",
    ),
    # a password without a user in prod
    (
        "broker url, prod, no user",
        ["gateway"],
        {"TRIPWIRE_PROFILE": "prod", "TRIPWIRE_BROKER__URL": f"amqp://:{SECRET}@h/"},
        "amqp:// needs user:password@",
    ),
    # the S3 block without an access key: pydantic echoed the secret key beside it
    (
        "s3 secret",
        ["detector"],
        {
            "TRIPWIRE_ARCHIVE__BACKEND": "s3",
            "TRIPWIRE_ARCHIVE__S3__ENDPOINT": "minio:9000",
            "TRIPWIRE_ARCHIVE__S3__SECRET_KEY": S3_SECRET,
        },
        "archive.s3.access_key: Field required",
    ),
    # a bad value of another field: the input dict held the secret
    (
        "s3 secret beside a bad bucket",
        ["detector"],
        {
            "TRIPWIRE_ARCHIVE__BACKEND": "s3",
            "TRIPWIRE_ARCHIVE__S3__ENDPOINT": "minio:9000",
            "TRIPWIRE_ARCHIVE__S3__ACCESS_KEY": "tripwire",
            "TRIPWIRE_ARCHIVE__S3__SECRET_KEY": S3_SECRET,
            "TRIPWIRE_ARCHIVE__S3__BUCKET": "Bad_Bucket",
        },
        "s3.bucket",
    ),
]


@pytest.mark.parametrize("name,argv,env,words", LEAKS, ids=[c[0] for c in LEAKS])
def test_settings_errors_never_print_secrets(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    argv: list[str],
    env: dict[str, str],
    words: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert SECRET not in err and S3_SECRET not in err and S3_SECRET[-8:] not in err, err
    assert "input_value" not in err


def test_validation_error_text_hides_the_input() -> None:
    """str() of the error itself, wherever it ends up (a log line, a worker's stderr)."""
    with pytest.raises(ValidationError) as err:
        GatewaySettings(broker={"url": f"http://tripwire:{SECRET}@h"})  # type: ignore[arg-type]
    assert SECRET not in str(err.value)
    with pytest.raises(ValidationError) as err:
        DetectorSettings(
            archive={"backend": "s3", "s3": {"endpoint": "m:9000", "secret_key": S3_SECRET}}  # type: ignore[arg-type]
        )
    assert S3_SECRET not in str(err.value)


def test_log_lines_are_redacted() -> None:
    """Through the formatter every tripwire process logs with: URL passwords and registered
    secrets are gone from the message, its arguments and a traceback alike."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(FORMAT))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    add_secret(S3_SECRET)
    try:
        log.warning("connect to amqp://tripwire:%s@rabbit:5672/%%2F failed", SECRET)
        log.warning("s3 said: bad signature for %s", S3_SECRET)
        try:
            raise ConnectionError(f"nats://user:{SECRET}@nats:4222 unreachable")
        except ConnectionError:
            log.exception("broker")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert SECRET not in text and S3_SECRET not in text, text
    assert "amqp://tripwire:***@rabbit:5672/%2F" in text
    assert "nats://user:***@nats:4222" in text and "Traceback" in text


def test_a_gateway_that_cannot_reach_its_broker_logs_no_password(tmp_path: Path) -> None:
    """The real process: every line it writes (its own, nats-py's, uvicorn's) is redacted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env |= {
        "TRIPWIRE_HOME": str(tmp_path),
        "TRIPWIRE_BROKER__CONNECT_TIMEOUT_S": "1",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [*GATEWAY, f"nats://tripwire:{SECRET}@127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "not reachable" in done.stderr
    assert SECRET not in done.stderr + done.stdout, done.stderr


# Each case: (what it checks, profile, broker url, error words or None when accepted)
AMQP = [
    # pika logs in as guest/guest when the URL has no credentials
    ("prod, no credentials", "prod", "amqp://rabbit:5672/%2F", "amqp:// needs user:password@"),
    ("prod, amqps, no credentials", "prod", "amqps://rabbit/", "amqp:// needs user:password@"),
    ("prod, user only", "prod", "amqp://tripwire@rabbit/", "needs its password too"),
    ("prod, real credentials", "prod", "amqp://tripwire:Zq8-long-pass@rabbit/", None),
    ("prod, nats without credentials", "prod", "nats://nats:4222", None),
    ("dev, no credentials", "dev", "amqp://127.0.0.1/", None),
    # a user without a password raised a TypeError from inside pika
    ("dev, user only", "dev", "amqp://guest@127.0.0.1/", "needs its password too"),
]


@pytest.mark.parametrize("name,profile,url,error", AMQP, ids=[c[0] for c in AMQP])
def test_amqp_credentials(name: str, profile: str, url: str, error: str | None) -> None:
    if error is None:
        GatewaySettings(profile=profile, broker={"url": url})  # type: ignore[arg-type]
        return
    with pytest.raises(ValidationError, match=error):
        GatewaySettings(profile=profile, broker={"url": url})  # type: ignore[arg-type]


def test_amqp_user_without_password_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--broker", "amqp://guest@127.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert "needs its password too" in err and "TypeError" not in err, err
    with pytest.raises(ConfigError, match="needs its password too"):
        RabbitBroker(
            "amqp://guest@127.0.0.1/",
            RabbitSettings(),
            connect_timeout_s=1,
            publish_timeout_s=1,
        )


# Each case: (variable, value, error words or None when accepted)
VARIABLES = [
    ("TRIPWIRE_PROFLE", "prod", "TRIPWIRE_PROFLE"),  # a typo of PROFILE: prod silently off
    ("TRIPWIRE_MAX_FRAME_BYTE", "1024", "TRIPWIRE_MAX_FRAME_BYTE"),
    ("tripwire_log_levl", "DEBUG", "tripwire_log_levl"),  # the prefix is case-insensitive
    ("TRIPWIRE_BROKER__URLL", "nats://h:4222", "urll"),  # nested: the block's extra=forbid
    ("TRIPWIRE_WEIGHTS", "yolo11n.pt", None),  # the detector's: one shell serves both
    ("TRIPWIRE_TIMELINE", "/tmp/t.jsonl", None),  # read outside the settings classes
    ("TRIPWIRE_DEPLOYMENTS", '["tripwire-detector"]', None),  # the wake controller's
    ("TRIPWIRE_PROFILE", "dev", None),
]


@pytest.mark.parametrize("key,value,error", VARIABLES, ids=[c[0] for c in VARIABLES])
def test_unknown_variables_are_errors(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, error: str | None
) -> None:
    monkeypatch.setenv(key, value)
    if error is None:
        GatewaySettings()
        return
    with pytest.raises(ValidationError, match=error):
        GatewaySettings()


def test_a_misspelled_variable_stops_the_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIPWIRE_PROFLE", "prod")
    assert main(["detector"]) == 2
    assert "unknown environment variable(s): TRIPWIRE_PROFLE" in capsys.readouterr().err
