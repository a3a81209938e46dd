"""Backends run requests and emit per-token timestamps. They never measure energy themselves."""
