"""Imports every area module that registers outbox handlers, for the worker to load.

Later areas (funds, alerts, sharing) add their ``handlers`` modules here.
"""

from __future__ import annotations
