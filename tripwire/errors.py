"""One root exception for the whole package; callers catch the specific subclasses."""


class TripwireError(Exception):
    """Root of every error tripwire raises on purpose."""


class Unavailable(TripwireError):
    """Something this process depends on cannot be reached now and may come back: the one
    family :mod:`tripwire.retry` retries. Every other error is permanent and fails at once."""


class ConfigError(TripwireError):
    """A settings value or the camera config file is invalid; the message names the path."""


class ContractError(TripwireError):
    """A message does not follow the message contract (missing or malformed headers)."""


class FrameError(TripwireError):
    """A frame cannot be used: not an image of an accepted type, truncated, or undecodable."""


class BrokerError(TripwireError):
    """A broker operation failed."""


class BrokerUnavailable(BrokerError, Unavailable):
    """The broker cannot be reached now; the caller may retry later (HTTP 503)."""


class PublishTimeout(BrokerUnavailable):
    """The broker did not confirm a publish in time; the message may or may not be stored."""


class ArchiveError(TripwireError):
    """An archive operation failed for good: bad key, access denied, missing bucket or object."""


class ArchiveUnavailable(ArchiveError, Unavailable):
    """The archive cannot be reached now (retries used up); the caller may retry later."""


class BrokerRejected(BrokerError):
    """The broker refused this message for good (too large, unroutable): retrying the same
    message cannot succeed, so it is answered or dead-lettered at once."""


class PayloadTooLarge(BrokerRejected):
    """The message is over the broker's size limit (NATS max_payload, a stream's max size)."""


class StoreError(TripwireError):
    """An events database operation failed for good (schema, constraint, bad query)."""


class StoreUnavailable(StoreError, Unavailable):
    """The events database cannot be reached now; the caller holds its work and retries."""


# The detector's exit status when its model cannot load at all (missing or unreadable weights,
# ultralytics not installed): restarting cannot help, so the local scaler stops instead
# (sysexits' EX_CONFIG).
MODEL_UNAVAILABLE_EXIT = 78
