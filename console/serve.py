"""Run the console app under uvicorn, ending the pages' live streams when asked to stop.

An open server-sent-events stream is a request that never completes, and uvicorn waits for
open requests before it stops: on SIGINT/SIGTERM the streams are told to end first, so
``tripwire up`` and ``tripwire console`` stop at once with browser tabs open.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from console.live import LiveFeed


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, feed: LiveFeed) -> None:
        super().__init__(config)
        self._feed = feed

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._feed.end_streams()
        super().handle_exit(sig, frame)


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,  # a stream that still did not end
    )
    _Server(config, app.state.live).run()
