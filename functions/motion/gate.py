"""Per-camera motion state: which frames are analysed, when events open and close, what is
published. Pixel work lives in :mod:`functions.motion.analyser`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from functions.motion.analyser import CALIBRATING, Analyser, Analysis, State
from functions.motion.decode import Geometry, Gray, array_to_gray, decode_gray, geometry
from functions.motion.pacing import ArrivalPacer, Pacer
from functions.motion.probe import probe
from functions.motion.regions import rasterize
from tripwire.camera_config import CameraConfig
from tripwire.contract import Box

log = logging.getLogger(__name__)

# At most one re-learn log line per camera this often (seconds): a scene that keeps being
# taken for lighting changes is one line a minute with a count, not a line every second.
_RELEARN_LOG_PERIOD_S = 60.0


def _near_any(boxes: tuple[Box, ...], previous: tuple[Box, ...]) -> bool:
    """Whether a box touches one of ``previous``, each grown by its own size on every side.

    Debouncing asks for motion *at the same place* in consecutive frames: a mover is near
    where it was, while heavy rain leaves small blobs somewhere new each time.
    """
    for x1, y1, x2, y2 in boxes:
        for p1, q1, p2, q2 in previous:
            w, h = p2 - p1, q2 - q1
            if x1 < p2 + w and p1 - w < x2 and y1 < q2 + h and q1 - h < y2:
                return True
    return False


@dataclass(frozen=True, slots=True)
class MotionResult:
    """The motion decision for one frame.

    ``motion`` says an event is open (after debouncing), not that this very frame changed;
    frames that were not analysed (``analysed`` false) carry the last analysed frame's
    score, boxes and zones. ``event_id`` names the open event; on the frame that closes an
    event (``event_closed``) it still names that event so the close can be matched.
    """

    motion: bool  # an event is open
    publish: bool  # motion, and under the camera's max_publish_fps
    score: float  # share of the analysed (unmasked) area that moved
    boxes: tuple[Box, ...]  # full-frame pixels (x1, y1, x2, y2), largest mover first
    event_id: str | None  # f"{camera}-{capture_ns of the opening frame}"
    event_opened: bool  # only on the frame that opened the event (the wake signal)
    event_closed: bool  # only on the frame that closed it
    analysed: bool  # False: paced by analysis_fps, rides along with the last decision
    calibrating: bool  # the last analysed frame was (re)learning the background
    width: int  # full frame, from the header
    height: int
    content_type: str | None = None  # from the header; None for pull-mode arrays
    zones: tuple[str, ...] = ()  # configured zones that moving pixels touch
    # On the frame a lighting change was seen (the background is re-learnt from it): why,
    # "brightness", "gain" or "area" (see functions/motion/analyser.py); else None.
    relearn: str | None = None


class MotionDetector:
    """Motion state of one camera. Not thread-safe: the caller serializes each camera."""

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera.id
        self._config = camera.motion
        self._masks = [[(x, y) for x, y in poly] for poly in camera.masks]
        self._zone_polygons = {name: [(x, y) for x, y in p] for name, p in camera.zones.items()}
        self._analysis = Pacer(self._config.analysis_fps)
        self._arrivals = ArrivalPacer(self._config.analysis_fps)
        self._publish = Pacer(self._config.max_publish_fps)
        self._geo: Geometry | None = None
        self._analyser: Analyser | None = None
        self._last: Analysis = CALIBRATING
        self._streak = 0  # consecutive motion frames while no event is open
        self._quiet = 0  # consecutive quiet frames while an event is open
        self._event_id: str | None = None
        self._candidate: tuple[Box, ...] = ()
        self._relearns_unlogged = 0
        self._last_analysed_ns: int | None = None
        self._relearn_logged = -_RELEARN_LOG_PERIOD_S

    def analysis_due(self, capture_ns: int, timed: bool = True) -> bool:
        """Whether :meth:`process` would analyse a frame captured now (else it only reads
        the header: cheap enough to run without a hand-off to a worker thread)."""
        return (self._analysis if timed else self._arrivals).due(capture_ns)

    def process(self, data: bytes, capture_ns: int, timed: bool = True) -> MotionResult:
        """Analyse (or pace) one encoded frame; raise FrameError when it is not usable.

        ``timed`` false: ``capture_ns`` is the arrival time (the camera sent none), and
        a burst of frames is not taken for frames of one instant (see ArrivalPacer).
        """
        info = probe(data)
        if not self.analysis_due(capture_ns, timed):
            return self._ride_along(capture_ns, info.width, info.height, info.content_type)
        geo = self._geometry(info.width, info.height)
        gray = decode_gray(data, info, geo)
        return self._decide(gray, capture_ns, timed, info.width, info.height, info.content_type)

    def process_array(
        self, frame: npt.NDArray[np.uint8], capture_ns: int, timed: bool = True
    ) -> MotionResult:
        """Same as :meth:`process` for a frame that is already decoded (gray or BGR)."""
        height, width = frame.shape[:2]
        if not self.analysis_due(capture_ns, timed):
            return self._ride_along(capture_ns, width, height, None)
        gray = array_to_gray(frame, self._geometry(width, height))
        return self._decide(gray, capture_ns, timed, width, height, None)

    @property
    def geometry(self) -> Geometry | None:
        """The current frame size and its analysis size (None before the first frame)."""
        return self._geo

    def _geometry(self, width: int, height: int) -> Geometry:
        geo = self._geo
        if geo is None or (geo.width, geo.height) != (width, height):
            # A new size (first frame, or the camera changed resolution): new buffers,
            # masks rasterized for it, and the background learnt again.
            cfg = self._config
            geo = geometry(width, height, cfg.analysis_height)
            regions = rasterize(
                self._masks, self._zone_polygons, geo.analysis_width, geo.analysis_height, cfg.blur
            )
            self._analyser = Analyser(cfg, geo, regions)
            self._geo = geo
            self._streak = 0
        return geo

    def _decide(
        self,
        gray: Gray,
        capture_ns: int,
        timed: bool,
        width: int,
        height: int,
        content_type: str | None,
    ) -> MotionResult:
        analyser = self._analyser
        assert analyser is not None  # set by _geometry before every analysis
        (self._analysis if timed else self._arrivals).take(capture_ns)
        last = self._last_analysed_ns
        gap_s = (capture_ns - last) / 1e9 if last is not None and capture_ns > last else 0.1
        self._last_analysed_ns = capture_ns
        analysis = analyser.analyse(gray, gap_s)
        self._last = analysis
        opened = closed = False
        closed_id = None
        if analysis.relearn is not None:
            self._log_relearn(analysis.relearn.value)
        if analysis.state in (State.CALIBRATING, State.LIGHTING):
            # No decision while the background is being learnt: an open event stays open
            # and nothing new opens (a light switched on must not open an event).
            self._streak = 0
        elif self._event_id is None:
            if analysis.state is not State.MOTION:
                self._streak = 0
            elif self._streak and not _near_any(analysis.boxes, self._candidate):
                self._streak = 1  # motion elsewhere: a new candidate, not a confirmation
            else:
                self._streak += 1
            self._candidate = analysis.boxes
            if self._streak >= self._config.frames_to_open:
                self._event_id = f"{self.camera}-{capture_ns}"
                self._quiet = 0
                opened = True
                self._publish.reset()  # the opening frame is always published
        elif analysis.state is State.MOTION:
            self._quiet = 0
        else:
            self._quiet += 1
            if self._quiet >= self._config.frames_to_close:
                closed, closed_id = True, self._event_id
                self._event_id = None
                self._streak = 0
        return self._result(
            capture_ns,
            width,
            height,
            content_type,
            True,
            opened,
            closed,
            closed_id,
            analysis.relearn.value if analysis.relearn is not None else None,
        )

    def _log_relearn(self, reason: str) -> None:
        self._relearns_unlogged += 1
        now = time.monotonic()
        if now - self._relearn_logged < _RELEARN_LOG_PERIOD_S:
            return
        log.info(
            "camera %s: motion gate took a lighting change (%s), re-learning the background "
            "(%d re-learn(s) since the last such line)",
            self.camera,
            reason,
            self._relearns_unlogged,
        )
        self._relearn_logged, self._relearns_unlogged = now, 0

    def _ride_along(
        self, capture_ns: int, width: int, height: int, content_type: str | None
    ) -> MotionResult:
        return self._result(capture_ns, width, height, content_type, False, False, False, None)

    def _result(
        self,
        capture_ns: int,
        width: int,
        height: int,
        content_type: str | None,
        analysed: bool,
        opened: bool,
        closed: bool,
        closed_id: str | None,
        relearn: str | None = None,
    ) -> MotionResult:
        motion = self._event_id is not None
        publish = motion and self._publish.due(capture_ns)
        if publish:
            self._publish.take(capture_ns)
        last = self._last
        return MotionResult(
            motion=motion,
            publish=publish,
            score=last.score,
            boxes=last.boxes,
            event_id=self._event_id if motion else closed_id,
            event_opened=opened,
            event_closed=closed,
            analysed=analysed,
            calibrating=last.state in (State.CALIBRATING, State.LIGHTING),
            width=width,
            height=height,
            content_type=content_type,
            zones=last.zones,
            relearn=relearn,
        )
