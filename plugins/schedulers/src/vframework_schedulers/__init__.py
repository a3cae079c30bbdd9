"""Standard CPU schedulers for vframework."""

from vframework import hookimpl

from .fair import FairScheduler

__all__ = ["FairScheduler"]


@hookimpl
def register_schedulers() -> list[type]:
    return [FairScheduler]
