"""Frame probing, reduced decoding and pacing: the cheap checks before any motion logic."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from functions.motion import MotionDetector
from functions.motion.decode import decode_gray, geometry
from functions.motion.pacing import ArrivalPacer, Pacer
from functions.motion.probe import JPEG, PNG, probe
from tripwire.app.scenes import Scene, Walker, encode
from tripwire.camera_config import CameraConfig, MotionConfig
from tripwire.errors import FrameError

HASH = "sha256:" + "0" * 64


def camera(**motion: object) -> CameraConfig:
    return CameraConfig(id="cam-1", token_hash=HASH, motion=MotionConfig.model_validate(motion))


def picture(width: int, height: int, seed: int = 1) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.asarray(big, np.uint8)


@pytest.mark.parametrize(
    "width,height",
    [(1280, 720), (1280, 714), (1921, 1081), (320, 240), (17, 9)],
)
def test_probe_reads_size_from_headers(width: int, height: int) -> None:
    img = picture(width, height)
    info = probe(encode(img, ".jpg"))
    assert (info.width, info.height, info.content_type) == (width, height, JPEG)
    info = probe(encode(img, ".png"))
    assert (info.width, info.height, info.content_type) == (width, height, PNG)


def test_probe_finds_sof_after_exif_and_progressive() -> None:
    img = picture(640, 360)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    data = buf.tobytes()
    # An APP1 segment (as EXIF would be) and fill bytes before the next marker.
    app1 = b"\xff\xe1" + (2 + 40).to_bytes(2, "big") + b"Exif\x00\x00" + bytes(34)
    data = data[:2] + app1 + b"\xff\xff" + data[2:]
    info = probe(data)
    assert (info.width, info.height) == (640, 360)


INVALID = [
    # Nothing at all.
    (b"", "empty frame"),
    # Neither JPEG nor PNG magic.
    (b"GIF89a" + bytes(100), "not a JPEG or PNG"),
    # Random bytes.
    (np.random.default_rng(3).bytes(5000), "not a JPEG or PNG"),
    # A JPEG cut inside its headers.
    (None, "truncated JPEG"),
    # A PNG without its IHDR.
    (b"\x89PNG\r\n\x1a\n" + bytes(10), "truncated PNG"),
]


@pytest.mark.parametrize("data,reason", INVALID, ids=[r for _, r in INVALID])
def test_probe_refuses_with_a_precise_reason(data: bytes | None, reason: str) -> None:
    if data is None:
        data = encode(picture(64, 64), ".jpg")[:100]
    with pytest.raises(FrameError, match=reason):
        probe(data)


def test_truncated_body_is_refused_before_decoding() -> None:
    jpeg = encode(picture(1280, 720), ".jpg")
    with pytest.raises(FrameError, match="no end-of-image marker"):
        probe(jpeg[: len(jpeg) // 2])
    png = encode(picture(320, 240), ".png")
    with pytest.raises(FrameError, match="no IEND"):
        probe(png[: len(png) - 20])
    # Padding after the end-of-image marker is fine.
    assert probe(jpeg + bytes(16)).width == 1280


def test_undecodable_frames_raise_not_decodable() -> None:
    jpeg = bytearray(encode(picture(64, 64), ".jpg"))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 9] = 0  # zero colour components: libjpeg refuses the frame
    detector = MotionDetector(camera())
    with pytest.raises(FrameError, match="not decodable"):
        detector.process(bytes(jpeg), 0)
    png = bytearray(encode(picture(64, 64), ".png"))
    idat = png.find(b"IDAT")
    for i in range(idat + 10, idat + 60):
        png[i] ^= 0x55
    with pytest.raises(FrameError, match="not decodable"):
        detector.process(bytes(png), 0)


@pytest.mark.parametrize(
    "width,height,factor,analysis",
    [
        # 720p: 1/4 decode gives the 180 rows asked for.
        (1280, 720, 4, (320, 180)),
        # The warehouse clip: 714 / 4 rounds up to 179.
        (1280, 714, 4, (320, 179)),
        # 1080p: 1/8 would be 135 rows, too few; 1/4 gives 270, resized to 180.
        (1920, 1080, 4, (320, 180)),
        # 4K: 1/8 then resize.
        (3840, 2160, 8, (320, 180)),
        # CDnet 320x240: no reduction, resize 240 -> 180.
        (320, 240, 1, (240, 180)),
        # 640x360: 1/2.
        (640, 360, 2, (320, 180)),
    ],
)
def test_geometry_keeps_about_analysis_height(
    width: int, height: int, factor: int, analysis: tuple[int, int]
) -> None:
    geo = geometry(width, height, 180)
    assert geo.factor == factor
    assert (geo.analysis_width, geo.analysis_height) == analysis


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_decode_gives_the_analysis_picture(ext: str) -> None:
    img = picture(1280, 720)
    data = encode(img, ext)
    info = probe(data)
    geo = geometry(info.width, info.height, 180)
    gray = decode_gray(data, info, geo)
    assert gray.shape == (180, 320) and gray.dtype == np.uint8
    small = cv2.resize(img, (320, 180), interpolation=cv2.INTER_AREA)
    expected = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    # Reduced DCT decode and area resize agree up to JPEG loss.
    assert np.abs(gray.astype(int) - expected.astype(int)).mean() < 4


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_boxes_are_in_full_frame_pixels(ext: str) -> None:
    walker = Walker(x=700, y=380, w=90, h=220, vx=60, start_s=1.0)
    scene = Scene(seed=21, walkers=[walker])
    detector = MotionDetector(camera())
    hits = 0
    for i in range(24):
        frame = encode(scene.bgr(i), ext)
        result = detector.process(frame, scene.capture_ns(i))
        assert (result.width, result.height) == (1280, 720)
        assert result.content_type == (JPEG if ext == ".jpg" else PNG)
        if result.analysed and result.boxes:
            (tx1, ty1, tx2, ty2) = scene.boxes(i)[0]
            x1, y1, x2, y2 = result.boxes[0]
            # The largest box covers the walker's centre and is about its size.
            assert x1 <= (tx1 + tx2) / 2 <= x2 and y1 <= (ty1 + ty2) / 2 <= y2
            assert 0.5 < (x2 - x1) * (y2 - y1) / ((tx2 - tx1) * (ty2 - ty1)) < 2.5
            hits += 1
    assert hits >= 10


def test_pacer_keeps_the_cadence_of_25_fps_at_10_per_second() -> None:
    pacer = Pacer(10.0)
    taken = 0
    for i in range(250):  # 10 s at 25 fps
        t = i * 40_000_000
        if pacer.due(t):
            pacer.take(t)
            taken += 1
    assert taken == 100


def test_pacer_restarts_after_a_gap_or_a_clock_jump() -> None:
    pacer = Pacer(5.0)
    pacer.take(10**12)
    assert not pacer.due(10**12 + 100_000_000)
    assert pacer.due(10**12 + 200_000_000)
    # The camera restarted: capture time went back.
    assert pacer.due(10**9)
    pacer.take(10**9)
    assert not pacer.due(10**9 + 1)


def test_zero_rate_means_every_frame() -> None:
    pacer = Pacer(0.0)
    for t in (0, 1, 1, 2):
        assert pacer.due(t)
        pacer.take(t)


@pytest.mark.parametrize("gap_ms", [3, 10])
def test_burst_without_capture_times_opens_an_event(gap_ms: int) -> None:
    # 4 s of a 10 fps camera (someone walks in at 1 s) uploaded in one burst, without
    # X-Capture-Ns: the gateway stamps each frame on arrival, a few ms apart. Paced by
    # that stamp at analysis_fps, 2 of the 40 frames were analysed (both calibrating)
    # and no event opened. Frames stamped on arrival may come in a burst.
    walker = Walker(x=-120, y=300, w=120, h=260, vx=400, start_s=1.0)
    scene = Scene(seed=2, walkers=[walker])
    detector = MotionDetector(camera())
    arrival = 1_700_000_000_000_000_000
    results = []
    for i in range(40):
        arrival += gap_ms * 1_000_000
        results.append(detector.process(scene.jpeg(i), arrival, timed=False))
    assert sum(r.event_opened for r in results) == 1
    assert sum(r.analysed for r in results) >= 20


def test_arrival_pacer_holds_a_steady_camera_to_the_rate() -> None:
    # An untimed 30 fps camera analysed at 10/s: after the first burst allowance (2 s of
    # analyses), 10 of every 30 frames.
    pacer = ArrivalPacer(10.0)
    taken = []
    for i in range(30 * 20):  # 20 s
        t = i * 33_333_333
        if pacer.due(t):
            pacer.take(t)
            taken.append(t)
    last_10_s = [t for t in taken if t >= 10 * 10**9]
    assert 99 <= len(last_10_s) <= 101
    assert len(taken) <= 20 * 10 + 20 + 1


def test_arrival_pacer_refills_after_a_burst_and_survives_a_clock_step_back() -> None:
    pacer = ArrivalPacer(5.0)
    t = 10**12
    burst = 0
    while pacer.due(t):
        pacer.take(t)
        burst += 1
        t += 1_000_000
    assert burst == 10  # 2 s worth at 5/s
    assert pacer.due(t + 200_000_000)  # one slot back after a period
    pacer.take(t + 200_000_000)
    assert not pacer.due(t - 10**9)  # the wall clock stepped back: no refill from it
