"""Fixtures the detector tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tripwire.archive.local import LocalArchive


@pytest.fixture
async def local_archive(tmp_path: Path) -> AsyncIterator[LocalArchive]:
    """An empty local archive (no fsync: the tests do not pull the plug)."""
    archive = LocalArchive(tmp_path / "archive", fsync=False)
    await archive.ensure()
    yield archive
    await archive.close()
