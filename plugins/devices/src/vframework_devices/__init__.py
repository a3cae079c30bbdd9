"""Standard virtual devices for vframework: an emulated disk driven register by register, and a
para-virtual block device on a Xen-style shared ring with grants and event channels."""

from vframework.api import hookimpl

from .disk import Disk, DiskParams
from .emulated import EmulatedDisk
from .ring_block import RingBlock

__all__ = ["Disk", "DiskParams", "EmulatedDisk", "RingBlock"]


@hookimpl
def register_devices() -> list[type]:
    return [EmulatedDisk, RingBlock]
