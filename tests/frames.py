"""Small synthetic JPEG scenes for gateway and pipeline tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def background(width: int = 1280, height: int = 720, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, size=(height // 16, width // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def static_frames(n: int, seed: int = 7) -> list[bytes]:
    """A still scene with fresh sensor noise in every frame."""
    base = background(seed=seed).astype(np.int16)
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(n):
        noisy = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        out.append(jpeg(noisy))
    return out


def moving_box_frames(n: int, seed: int = 7, size: tuple[int, int] = (120, 260)) -> list[bytes]:
    """A person-sized dark box walking left to right across the still scene."""
    base = background(seed=seed)
    w, h = size
    out = []
    for i in range(n):
        frame = base.copy()
        x = 100 + i * 40
        cv2.rectangle(frame, (x, 300), (x + w, 300 + h), (20, 20, 20), -1)
        out.append(jpeg(frame))
    return out


def clip_jpegs(path: Path, every: int = 1) -> list[tuple[float, bytes]]:
    """(seconds into the clip, JPEG at quality 85) of every ``every``-th frame of a video."""
    video = cv2.VideoCapture(str(path))
    fps = video.get(cv2.CAP_PROP_FPS) or 24.0
    out = []
    index = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        if index % every == 0:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert ok
            out.append((index / fps, bytes(data.tobytes())))
        index += 1
    video.release()
    return out
