"""Keep-alive policies: how long an idle detector stays resident before it goes to zero.

KEDA's rule is one fixed ``cooldownPeriod``. The policies here learn the window per
ScaledObject (one camera group) from the idle gaps it sees, and are chosen per policy file
with annotations (``spec``):

- ``fixed``: the file's ``cooldownPeriod`` (KEDA's behaviour; the default);
- ``histogram``: the hybrid histogram policy of Shahrad et al., "Serverless in the Wild"
  (USENIX ATC'20): pre-warm and keep-alive windows from percentiles of the idle-gap
  histogram, falling back to the fixed window while the histogram is not representative;
- ``break-even``: keep the model resident while its idle power costs less than a cold start
  would (``resident_w x gap < cold_start_j``), the window that minimises the expected energy
  over the gaps seen.

The scaler's rules (:class:`tripwire.scaler.rules.Scaler`) ask the policy for the window
and tell it every idle gap; nothing here reads a clock.
"""

from tripwire.keepalive.spec import ANNOTATION_PREFIX, KeepAliveSpec, spec_from_annotations
from tripwire.keepalive.windows import (
    BreakEven,
    Fixed,
    GapHistogram,
    HybridHistogram,
    KeepAlive,
    keep_alive_for,
)

__all__ = [
    "ANNOTATION_PREFIX",
    "BreakEven",
    "Fixed",
    "GapHistogram",
    "HybridHistogram",
    "KeepAlive",
    "KeepAliveSpec",
    "keep_alive_for",
    "spec_from_annotations",
]
