"""tripwire: motion-gated, scale-to-zero video analytics (the shared core package)."""

__version__ = "0.1.0"
