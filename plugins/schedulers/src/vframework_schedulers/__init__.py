"""Standard CPU schedulers for vframework: ``fair``, ``proportional`` (ESX-style shares, stride
scheduling) and ``credit`` (Xen's credit scheduler)."""

from vframework.api import hookimpl

from .credit import CreditScheduler
from .fair import FairScheduler
from .proportional import ProportionalScheduler

__all__ = ["CreditScheduler", "FairScheduler", "ProportionalScheduler"]


@hookimpl
def register_schedulers() -> list[type]:
    return [FairScheduler, ProportionalScheduler, CreditScheduler]
