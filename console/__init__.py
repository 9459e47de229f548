"""The console: the events API over the events database (and the operator's web page)."""
