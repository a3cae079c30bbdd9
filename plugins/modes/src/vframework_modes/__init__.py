"""Standard virtualization modes for vframework (and the bare-metal baseline)."""

from vframework.api import hookimpl

from .bare_metal import BareMetal
from .hardware import HardwareAssisted
from .paravirtual import Paravirtual
from .software import Full, TrapAndEmulate

__all__ = ["BareMetal", "Full", "HardwareAssisted", "Paravirtual", "TrapAndEmulate"]


@hookimpl
def register_modes() -> list[type]:
    return [BareMetal, Full, TrapAndEmulate, Paravirtual, HardwareAssisted]
