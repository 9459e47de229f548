"""Motion traces and the fleet simulator.

- ``trace``: the compact trace format (per camera: motion events as open, close, frames);
- a trace from the motion function over a clip or a live camera: :mod:`tripwire.app.trace_record`
  (the application layer: it runs ``functions.motion``);
- ``generate``: fleets of cameras from a trace or a default shape (diurnal, per-camera
  variety, correlated bursts);
- ``simulate``: N cameras over simulated hours, driving the local scaler's own rules
  (:class:`tripwire.scaler.rules.Scaler`) on simulated time, with a device power profile;
- ``bench``: ``tripwire bench fleet``: every keep-alive policy over the same fleet.
"""
