"""The gateway against hostile or broken cameras, over real sockets and a real nats-server:
decompression bombs, camera-id enumeration, half-sent requests, dropped uploads, /metrics
and /docs off the camera port, frames the broker can never take, multipart uploads."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.app import HEADER_ROOM
from tests.frames import background, jpeg, moving_box_frames, png
from tests.gateway_server import drain_motion, running_gateway
from tests.nats_servers import nats_server_in
from tripwire.camera_config import CamerasFile, parse_config
from tripwire.contract import FrameMeta
from tripwire.embedded_nats import EmbeddedNats, free_port
from tripwire.settings import BrokerSettings, GatewaySettings
from tripwire.tokens import hash_token, new_token

REPO = Path(__file__).resolve().parents[2]
TOKEN = new_token()
CAMERAS = ["cam-a", "cam-b"]
MiB = 1024 * 1024


def _settings(**changes: Any) -> GatewaySettings:
    return GatewaySettings(broker=BrokerSettings(publish_timeout_s=2.0), **changes)


def _cameras(ids: list[str] = CAMERAS) -> CamerasFile:
    motion = {"calibration_frames": 2, "frames_to_open": 2, "analysis_fps": 0}
    return parse_config(
        {
            "defaults": {"motion": {**motion, "max_publish_fps": 100}},
            "cameras": [{"id": c, "token_hash": hash_token(TOKEN)} for c in ids],
        }
    )


def _headers(token: str | None = TOKEN, content_type: str = "image/jpeg") -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _rejects(metrics_text: str, reason: str) -> float:
    prefix = f'tripwire_frames_rejected_total{{reason="{reason}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with nats_server_in(tmp_path_factory.mktemp("sec-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(nats: EmbeddedNats) -> Iterator[str]:
    """Short deadlines so that half-sent requests are decided within the test."""
    settings = _settings(header_timeout_s=1.0, body_timeout_s=1.0)
    with running_gateway(settings, _cameras(), nats.url) as url:
        yield url


@pytest.fixture
def client(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=30) as c:
        yield c


# -- decompression bombs ---------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def png_bomb(side: int = 16384) -> bytes:
    """A valid 8-bit grayscale PNG of side x side black pixels: ~260 KB, ~256 MiB decoded."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + one byte per pixel
    idat = b"".join(packer.compress(row * 64) for _ in range(side // 64)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(jpeg(background(64, 64)))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def test_a_png_bomb_is_refused_from_its_header(client: httpx.Client) -> None:
    bomb = png_bomb()
    assert len(bomb) < 400_000  # small on the wire: the body limit cannot catch it
    r = client.post(
        "/v1/cameras/cam-a/frames", content=bomb, headers=_headers(content_type="image/png")
    )
    assert r.status_code == 413, r.text
    assert "16384x16384 = 268435456 pixels" in r.json()["detail"]
    assert _rejects(client.get("/metrics").text, "too_many_pixels") >= 1


def test_a_jpeg_claiming_a_huge_size_is_refused_from_its_header(client: httpx.Client) -> None:
    r = client.post(
        "/v1/cameras/cam-a/frames", content=jpeg_claiming(16000, 12000), headers=_headers()
    )
    assert r.status_code == 413, r.text
    assert "16000x12000" in r.json()["detail"]


def test_the_pixel_limit_is_a_setting(nats: EmbeddedNats) -> None:
    """At max_frame_pixels = 720p a 1080p frame is refused, a 720p frame is not."""
    settings = _settings(max_frame_pixels=1280 * 720)
    with (
        running_gateway(settings, _cameras(), nats.url) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        full_hd = c.post(
            "/v1/cameras/cam-b/frames",
            content=png(background(1920, 1080)),
            headers=_headers(content_type="image/png"),
        )
        hd = c.post("/v1/cameras/cam-b/frames", content=jpeg(background()), headers=_headers())
    assert full_hd.status_code == 413 and "1920x1080" in full_hd.json()["detail"], full_hd.text
    assert "over the limit of 921600" in full_hd.json()["detail"]
    assert hd.status_code == 202, hd.text


# -- camera ids cannot be listed -------------------------------------------------------------


def test_an_unknown_camera_and_a_wrong_token_get_the_same_answer(client: httpx.Client) -> None:
    frame = jpeg(background())
    answers = {
        name: client.post(f"/v1/cameras/{camera}/frames", content=frame, headers=_headers(token))
        for name, camera, token in [
            ("known camera, wrong token", "cam-a", new_token()),
            ("unknown camera, a valid token", "cam-nope", TOKEN),
            ("unknown camera, wrong token", "cam-nope", new_token()),
            ("known camera, no token", "cam-a", None),
            ("unknown camera, no token", "cam-nope", None),
        ]
    }
    seen = {(r.status_code, r.content, r.headers.get("www-authenticate")) for r in answers.values()}
    assert len(seen) == 1, {name: (r.status_code, r.text) for name, r in answers.items()}
    assert answers["known camera, wrong token"].status_code == 401


# -- half-sent requests, dropped uploads -----------------------------------------------------


def _recv_all(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``within`` passes)."""
    sock.settimeout(within)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        pytest.fail(f"connection still open after {within:g}s; got {got[:200]!r}")
    return got


def test_half_sent_headers_are_cut_off(gateway: str) -> None:
    """Twenty clients that send part of their headers and stall are all disconnected,
    while a normal camera is served meanwhile."""
    host, port = _host_port(gateway)
    stalled = []
    for _ in range(20):
        sock = socket.create_connection((host, port), 5)
        sock.sendall(b"POST /v1/cameras/cam-a/frames HTTP/1.1\r\nHost: x\r\nAuthoriz")
        stalled.append(sock)
    silent = socket.create_connection((host, port), 5)  # connects and sends nothing
    stalled.append(silent)
    with httpx.Client(base_url=gateway, timeout=30) as c:
        r = c.post("/v1/cameras/cam-a/frames", content=jpeg(background()), headers=_headers())
        assert r.status_code == 202, r.text
    for sock in stalled:
        with sock:
            reply = _recv_all(sock, 30)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def test_a_stalled_keep_alive_request_is_cut_off(gateway: str) -> None:
    """The header deadline applies to the second request on a connection too."""
    host, port = _host_port(gateway)
    frame = jpeg(background())
    with socket.create_connection((host, port), 5) as sock:
        sock.sendall(
            f"POST /v1/cameras/cam-a/frames HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
            f"\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n".encode()
            + frame
        )
        sock.settimeout(30)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 202"), first[:200]
        # The next request's first bytes, then nothing; dribbled bytes keep the keep-alive
        # timer from closing it, so only the header deadline can.
        for part in (b"POST /v1/cam", b"eras/cam-a/fr", b"ames HTTP/1.1\r\n"):
            sock.sendall(part)
            time.sleep(0.4)
        reply = _recv_all(sock, 30)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def test_a_half_sent_body_gets_408_and_the_connection_closed(gateway: str) -> None:
    host, port = _host_port(gateway)
    with socket.create_connection((host, port), 5) as sock:
        sock.sendall(
            f"POST /v1/cameras/cam-a/frames HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
            "\r\nContent-Type: image/jpeg\r\nContent-Length: 200000\r\n\r\n".encode()
            + b"\xff\xd8\xff"
            + bytes(20_000)
        )
        reply = _recv_all(sock, 30)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b"not received within 1 s" in reply
    with httpx.Client(base_url=gateway, timeout=30) as c:
        assert _rejects(c.get("/metrics").text, "body_timeout") >= 1


def test_a_dropped_upload_is_counted_and_logged_in_one_line(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera that loses its connection mid-upload: a metric and one warning line, no
    "Exception in ASGI application" traceback."""
    host, port = _host_port(gateway)
    with httpx.Client(base_url=gateway, timeout=30) as c:
        before = _rejects(c.get("/metrics").text, "disconnected")
        caplog.clear()
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                with socket.create_connection((host, port), 5) as sock:
                    sock.sendall(
                        f"POST /v1/cameras/cam-b/frames HTTP/1.1\r\nHost: x\r\nAuthorization: "
                        f"Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\nContent-Length: 300000"
                        "\r\n\r\n".encode()
                        + b"\xff\xd8\xff"
                        + bytes(50_000)
                    )
                    time.sleep(0.2)  # let the gateway start reading the body
            deadline = time.monotonic() + 20
            while _rejects(c.get("/metrics").text, "disconnected") < before + 3:
                assert time.monotonic() < deadline, c.get("/metrics").text
                time.sleep(0.1)
            time.sleep(0.5)  # anything else the gateway would log about them
    records = [r for r in caplog.records if r.name.startswith(("gateway", "uvicorn"))]
    assert len(records) == 3, [r.getMessage() for r in records]
    for record in records:
        assert record.exc_info is None and record.levelno == logging.WARNING
        assert "\n" not in record.getMessage()
        assert "camera cam-b: connection dropped after" in record.getMessage()


# -- /metrics and /docs off the camera port --------------------------------------------------


def test_metrics_and_docs_are_only_on_the_internal_port(nats: EmbeddedNats) -> None:
    internal = free_port()
    settings = _settings(internal_port=internal)
    with (
        running_gateway(settings, _cameras(), nats.url) as url,
        httpx.Client(base_url=url, timeout=30) as cameras,
        httpx.Client(base_url=f"http://127.0.0.1:{internal}", timeout=30) as inside,
    ):
        for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
            assert cameras.get(path).status_code == 404, path
            assert inside.get(path).status_code == 200, path
        for path in ("/healthz", "/readyz"):  # probes and load balancers use these
            assert cameras.get(path).status_code == 200, path
        r = cameras.post("/v1/cameras/cam-a/frames", content=jpeg(background()), headers=_headers())
        assert r.status_code == 202, r.text
        assert "tripwire_frames_received_total" in inside.get("/metrics").text


# -- permanent broker refusals ---------------------------------------------------------------


def noise_jpeg(min_bytes: int) -> bytes:
    """A JPEG of random noise, at least ``min_bytes`` long (noise does not compress)."""
    rng = np.random.default_rng(3)
    side = 512
    while True:
        data = jpeg(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), quality=95)
        if len(data) >= min_bytes:
            return data
        side *= 2


def test_a_frame_over_the_broker_payload_is_413_at_once(tmp_path: Path) -> None:
    """The nats-server is restarted with a lower max_payload under a running gateway: a frame
    over it is a permanent 413 (it used to be 503 + Retry-After for ever)."""
    store = tmp_path / "nats"
    server = EmbeddedNats.start(store)
    settings = _settings(motion_gate=False)  # every frame is published
    frame = noise_jpeg(2 * MiB)
    try:
        with (
            running_gateway(settings, _cameras(["cam-a"]), server.url) as url,
            httpx.Client(base_url=url, timeout=30) as c,
        ):
            r = c.post("/v1/cameras/cam-a/frames", content=frame, headers=_headers())
            assert r.status_code == 202, r.text
            server.stop()
            server = EmbeddedNats.start(store, port=server.port, max_payload=1 * MiB)
            small = jpeg(background())
            deadline = time.monotonic() + 30
            while (
                c.post("/v1/cameras/cam-a/frames", content=small, headers=_headers()).status_code
                != 202
            ):
                assert time.monotonic() < deadline, "gateway did not reconnect"
                time.sleep(0.2)
            for _ in range(3):  # permanent: the same answer every time, no Retry-After
                r = c.post("/v1/cameras/cam-a/frames", content=frame, headers=_headers())
                assert r.status_code == 413, r.text
                assert "Retry-After" not in r.headers
                assert "max_payload" in r.json()["detail"]
            assert _rejects(c.get("/metrics").text, "over_broker_limit") == 3
    finally:
        server.stop()


def test_a_frame_limit_over_the_broker_payload_is_refused_at_start(tmp_path: Path) -> None:
    """`tripwire gateway` with max_frame_bytes 8 MiB against a nats-server that takes 1 MiB
    exits with the reason instead of serving frames it could never publish."""
    server = EmbeddedNats.start(tmp_path / "nats", max_payload=1 * MiB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env |= {"TRIPWIRE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tripwire.app.cli", "gateway"]
    command += ["--broker", server.url, "--port", "0"]
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert f"over the broker's max payload of {1 * MiB} bytes" in done.stderr
        assert "Traceback" not in done.stderr
        # a limit that fits starts (and is stopped here by the test)
        env["TRIPWIRE_MAX_FRAME_BYTES"] = str(1 * MiB - HEADER_ROOM)
        proc = subprocess.Popen(
            command,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            lines = []
            while line := proc.stderr.readline():  # pytest-timeout bounds a silent gateway
                lines.append(line)
                if "gateway listening on" in line:
                    break
        finally:
            proc.kill()
            proc.wait(30)
        assert "gateway listening on" in lines[-1], lines
    finally:
        server.stop()


# -- multipart/form-data uploads -------------------------------------------------------------


def _multipart(
    client: httpx.Client, camera: str, files: dict[str, Any], data: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        f"/v1/cameras/{camera}/frames",
        files=files,
        data=data,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def test_multipart_uploads_publish_the_image_part(nats: EmbeddedNats) -> None:
    """What an IP camera's "HTTP upload" sends: the JPEG as a file part beside text fields.
    The published message body is the image part's bytes, exactly."""
    settings = _settings(motion_gate=False)
    asyncio.run(drain_motion(nats.url, "cam-b", 0.2))
    frames = moving_box_frames(3)
    with (
        running_gateway(settings, _cameras(["cam-b"]), nats.url) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        answers = [
            _multipart(c, "cam-b", {"image": ("snap.jpg", frames[0], "image/jpeg")}),
            # declared as octet-stream: recognised by its first bytes
            _multipart(
                c,
                "cam-b",
                {"file": ("snap.jpg", frames[1], "application/octet-stream")},
                {"camera": "front door", "time": "2026-12-03T17:00:00Z"},
            ),
            _multipart(
                c,
                "cam-b",
                {"snapshot": ("snap.png", png(background()), "image/png")},
                {"event": "motion"},
            ),
        ]
        assert [r.status_code for r in answers] == [202] * 3, [r.text for r in answers]
    got = asyncio.run(drain_motion(nats.url, "cam-b"))
    bodies = sorted(got, key=lambda m: FrameMeta.from_headers(m[1]).seq)
    assert [b for b, _ in bodies][:2] == frames[:2]
    assert [FrameMeta.from_headers(h).content_type for _, h in bodies] == [
        "image/jpeg",
        "image/jpeg",
        "image/png",
    ]


MULTIPART_ERRORS = [
    # (what it checks, files, data, status, words the detail must contain)
    ("no image part", {"notes": ("a.txt", b"hello", "text/plain")}, None, 422, "0 image parts"),
    (
        "two image parts",
        {
            "a": ("a.jpg", jpeg(background()), "image/jpeg"),
            "b": ("b.jpg", jpeg(background()), "image/jpeg"),
        },
        None,
        422,
        "2 image parts",
    ),
    ("a bomb inside", {"a": ("a.png", png_bomb(), "image/png")}, None, 413, "16384x16384"),
    (
        "a truncated image part",
        {"a": ("a.jpg", jpeg(background())[:5000], "image/jpeg")},
        None,
        422,
        "truncated JPEG",
    ),
]


@pytest.mark.parametrize(
    "name,files,data,status,words", MULTIPART_ERRORS, ids=[c[0] for c in MULTIPART_ERRORS]
)
def test_multipart_errors(
    client: httpx.Client,
    name: str,
    files: dict[str, Any],
    data: dict[str, str] | None,
    status: int,
    words: str,
) -> None:
    r = _multipart(client, "cam-a", files, data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_multipart_without_a_boundary_is_refused(client: httpx.Client) -> None:
    r = client.post(
        "/v1/cameras/cam-a/frames",
        content=b"--x\r\n\r\n",
        headers=_headers(content_type="multipart/form-data"),
    )
    assert r.status_code == 422 and "boundary" in r.json()["detail"], r.text


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_cameras_post_over_tls(nats: EmbeddedNats, tmp_path: Path) -> None:
    """With a certificate both ports speak HTTPS: a camera's token and frames never cross
    the network in clear, and a plain-HTTP request gets no answer from the gateway."""
    cert, key = _self_signed(tmp_path)
    internal = free_port()
    settings = _settings(tls_certfile=cert, tls_keyfile=key, internal_port=internal)
    with running_gateway(settings, _cameras(), nats.url) as url:
        tls_url = url.replace("http://", "https://")
        with httpx.Client(
            base_url=tls_url, timeout=30, verify=ssl.create_default_context(cafile=cert)
        ) as c:
            r = c.post("/v1/cameras/cam-a/frames", content=jpeg(background()), headers=_headers())
            assert r.status_code == 202, r.text
            assert c.get("/metrics").status_code == 404
        with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=cert)) as c:
            assert c.get(f"https://127.0.0.1:{internal}/metrics").status_code == 200
        with httpx.Client(base_url=url, timeout=30) as plain:
            try:
                answer = plain.post(
                    "/v1/cameras/cam-a/frames", content=jpeg(background()), headers=_headers()
                )
            except httpx.HTTPError:
                pass  # the TLS server closed the connection
            else:
                assert answer.status_code == 400, answer.text  # not a frame accepted


def test_a_stalled_upload_does_not_hold_the_exit(tmp_path: Path) -> None:
    """SIGTERM with a camera stalled mid-body: `tripwire gateway` exits within its graceful
    shutdown bound, not after the body deadline (here 300 s)."""
    from gateway.server import GRACEFUL_SHUTDOWN_S
    from tripwire.starter import write_starter_config

    _, tokens = write_starter_config(tmp_path, 1, force=True)
    token = tokens.read_text().split("=", 1)[1].split()[0]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")}
    env |= {"TRIPWIRE_HOME": str(tmp_path), "TRIPWIRE_PORT": str(port), "PYTHONPATH": str(REPO)}
    env["TRIPWIRE_BODY_TIMEOUT_S"] = "300"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "tripwire.app.cli", "gateway"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), 5) as sock:
            sock.sendall(
                f"POST /v1/cameras/cam-1/frames HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{token}\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n".encode()
                + b"\xff\xd8\xff"
            )
            time.sleep(0.5)
            started = time.monotonic()
            gateway.terminate()
            gateway.wait(GRACEFUL_SHUTDOWN_S + 30)
            assert time.monotonic() - started < GRACEFUL_SHUTDOWN_S + 30
    finally:
        gateway.kill()
        gateway.wait(30)
