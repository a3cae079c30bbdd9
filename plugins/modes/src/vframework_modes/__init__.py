"""Standard virtualization modes for vframework."""

from vframework import hookimpl

from .bare_metal import BareMetal

__all__ = ["BareMetal"]


@hookimpl
def register_modes() -> list[type]:
    return [BareMetal]
