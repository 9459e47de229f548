"""A real RTSP server for the pull-mode tests: GStreamer's gst-rtsp-server (Debian's
``gir1.2-gst-rtsp-server-1.0``), run with the SYSTEM python3 and gi, as a subprocess.

    /usr/bin/python3 tests/rtsp_server.py PORT [CLIP]

serves ``rtsp://127.0.0.1:PORT/cam``: MJPEG over RTP (no H.264 encoder needed), 640x360 at
10 frames/s, either GStreamer's moving-ball test pattern (generated, endless) or CLIP decoded
(it ends with the clip). Prints ``ready`` once it listens; SIGTERM stops it (a camera going away).
"""

from __future__ import annotations

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# I420: rtpjpegpay carries 4:2:0 JPEG only (the test source defaults to another format)
CAPS = "video/x-raw,format=I420,width=640,height=360,framerate=10/1"


def launch_line(clip: str | None) -> str:
    if clip is None:
        source = "videotestsrc is-live=true pattern=ball"
    else:
        source = f'filesrc location="{clip}" ! decodebin ! videoconvert ! videoscale ! videorate'
    return f"( {source} ! {CAPS} ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"


def main() -> None:
    port = sys.argv[1]
    clip = sys.argv[2] if len(sys.argv) > 2 else None
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(clip))
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    GLib.timeout_add(100, lambda: True)  # lets Python run the signal handler
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
