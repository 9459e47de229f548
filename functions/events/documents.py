"""What the events function sends out: alert documents and event notices, with links.

Links are absolute URLs of the console (``console_url``), so a phone that gets the MQTT
message or the webhook can open the event and its snapshot directly.
"""

from __future__ import annotations

import json
from typing import Any

from tripwire.event_messages import ALERT_SCHEMA


class Links:
    def __init__(self, console_url: str) -> None:
        self.base = console_url.rstrip("/")

    def event(self, event_id: str) -> dict[str, str]:
        return {
            "event": f"{self.base}/v1/events/{event_id}",
            "snapshot": f"{self.base}/v1/events/{event_id}/snapshot.jpg",
            "snapshot_annotated": f"{self.base}/v1/events/{event_id}/snapshot.jpg?annotated=1",
        }


def alert_document(row: dict[str, Any], links: Links) -> dict[str, Any]:
    event_id = row["event_id"]
    return {
        "schema": ALERT_SCHEMA,
        "id": row["id"],
        "kind": row["kind"],
        "camera": row["camera"],
        "event_id": event_id,
        "seq": row["seq"],
        "capture_ns": row["capture_ns"],
        "raised_ns": row["raised_ns"],
        "class": row["label"],
        "confidence": row["confidence"],
        "xyxy": row["box"],
        "frames": row["frames"],
        "model": row["model"],
        "archive": {"frame": row["frame_key"]},
        "urls": links.event(event_id) if event_id else {},
    }


def event_notice(
    kind: str, camera: str, event_id: str, capture_ns: int, links: Links
) -> dict[str, Any]:
    """``new`` when an event opens, ``end`` when it closes (labels are in the API)."""
    field = "start_ns" if kind == "new" else "end_ns"
    return {
        "id": event_id,
        "camera": camera,
        field: capture_ns,
        "urls": links.event(event_id),
        "type": kind,
    }


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
