"""The events function: the one writer of event records and alerts (see worker.py)."""
