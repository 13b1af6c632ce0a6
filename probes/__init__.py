"""Probers: one async function per protocol, all with the signature of `probes.base.Prober`.

The registry (PROBERS, CHECKS_BY_KIND, VERDICTS, METRICS; probes.registry) is imported on first
use: a grab worker (`python -m probes.grab_worker`) imports this package too, and needs none of
the probers' libraries (zeep, aiohttp, lxml: about 50 MB of each worker's memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.base import CheckResult, Sample, Status
    from probes.registry import CHECKS_BY_KIND, METRICS, PROBERS, VERDICTS, Verdict

__all__ = ["CHECKS_BY_KIND", "METRICS", "PROBERS", "VERDICTS", "CheckResult", "Sample", "Status",
           "Verdict"]


def __getattr__(name: str) -> Any:
    """The registry's names, imported when first asked for (PEP 562)."""
    if name in __all__:
        from probes import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'probes' has no attribute {name!r}")
