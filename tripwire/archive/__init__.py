"""Archive adapters: one Protocol (``tripwire.archive.protocol``), one file per backend.

Frames and detections are stored under deterministic keys (``tripwire.archive.keys``).
Nothing outside ``tripwire/archive/s3.py`` imports minio.
"""

from tripwire.archive.factory import open_archive
from tripwire.archive.keys import detections_key, frame_key
from tripwire.archive.protocol import Archive
from tripwire.archive.settings import ArchiveSettings, S3Settings

__all__ = [
    "Archive",
    "ArchiveSettings",
    "S3Settings",
    "detections_key",
    "frame_key",
    "open_archive",
]
