"""Stdlib-only helpers shared by the peer and accord runners (they run in different venvs)."""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def peak_rss_mib() -> float:
    """Peak resident memory of this process plus the largest of its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # Linux reports KiB


def report(**fields: Any) -> None:
    """One JSON line on stdout, prefixed so the driver can find it among the trainer's output."""
    print("RESULT " + json.dumps(fields), flush=True)
    sys.stdout.flush()
