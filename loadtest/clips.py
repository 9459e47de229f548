"""Real frames from ../shared/data for benchmarks, with a synthetic fallback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WAREHOUSE = SHARED_DATA / "video_warehouse_cctv_forklift3"


def find_video(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".mp4", ".avi", ".mkv"})
    return videos[0] if videos else None


def sample_720p_jpeg(quality: int = 80) -> bytes:
    """One 1280x720 frame: the warehouse clip's first frame when present, else synthetic."""
    video = find_video(WAREHOUSE)
    frame: np.ndarray | None = None
    if video is not None:
        cap = cv2.VideoCapture(str(video))
        ok, frame = cap.read()
        cap.release()
        if not ok:
            frame = None
    if frame is None:
        rng = np.random.default_rng(3)
        small = rng.integers(0, 255, size=(45, 80, 3), dtype=np.uint8)
        frame = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)
    frame = cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encode failed")
    return buf.tobytes()
