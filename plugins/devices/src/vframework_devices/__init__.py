"""Standard virtual devices for vframework: an emulated disk and NIC driven register by register,
and para-virtual block and network devices on Xen-style shared rings with grants and event
channels; the network devices share the host's NIC and software bridge."""

from vframework.api import hookimpl

from .disk import Disk, DiskParams
from .emulated import EmulatedDisk
from .emulated_nic import EmulatedNIC
from .net import NIC
from .ring_block import RingBlock
from .ring_net import RingNet

__all__ = ["NIC", "Disk", "DiskParams", "EmulatedDisk", "EmulatedNIC", "RingBlock", "RingNet"]


@hookimpl
def register_devices() -> list[type]:
    return [EmulatedDisk, EmulatedNIC, RingBlock, RingNet]
