"""Test kit for adapters and the control plane, part of the public API (as httpx ships its
``MockTransport``): an adapter contract every adapter's tests subclass, a fault-injecting
wrapper around a real adapter, and a clock tests can move.

Importing this package imports pytest; nothing in gridbridge imports it.
"""

from __future__ import annotations

from .contract import AdapterContract
from .faults import FaultyAdapter, ManualClock

__all__ = ["AdapterContract", "FaultyAdapter", "ManualClock"]
