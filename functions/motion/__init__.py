"""The motion function: a cheap CPU gate that decides which camera frames wake the detector.

``MotionDetector`` (one per camera) turns frames into ``MotionResult`` decisions; pull mode
(:mod:`functions.motion.pull`) reads a video source and feeds it frame by frame.
"""

from functions.motion.gate import MotionDetector, MotionResult

__all__ = ["MotionDetector", "MotionResult"]
