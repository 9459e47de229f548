"""Operator authentication: bearer tokens from the config's ``operators`` (hashed at rest).

Camera tokens never open the console and operator tokens never push frames: they live in
different lists and are checked by different processes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tripwire.camera_config import CamerasFile
from tripwire.tokens import verify

_bearer = HTTPBearer(auto_error=False, description="an operator token (tripwire token new "
                     "--operator NAME)")  # fmt: skip


def operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the operator whose token this request carries; 401 otherwise."""
    cameras: CamerasFile = request.app.state.cameras
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
        for op in cameras.operators:
            if verify(token, op.token_hash):
                return op.name
    raise HTTPException(
        401, "missing or wrong operator token", headers={"WWW-Authenticate": "Bearer"}
    )


Operator = Annotated[str, Depends(operator)]
