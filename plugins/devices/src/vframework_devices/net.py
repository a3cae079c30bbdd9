"""The host's network: one physical NIC and a software bridge, shared by every VM's net device.

The topology is a networkx graph: the NIC (``eth0``) and each VM's virtual interface
(``vif-<vm>``) hang off the bridge (``br0``). A packet goes from its sender's interface along
the graph's shortest path to its destination: to ``eth0`` (the outside world) it is queued for
the wire; to another VM's interface it crosses the bridge only, in software.

* **The wire** transmits one packet at a time at ``bandwidth``, then the packet is on the
  network after ``latency``. Packets wait in one queue per VM, and the NIC takes the next from
  each VM in turn (round robin): a VM that floods the wire delays its own packets, not others'.
* **The bridge** delivers a packet from one VM to another after ``bridge_latency``; the driver
  domain copies the data from the sender's pages into the receiver's posted buffer
  (``bridge_bytes`` on the host: a copy, but not by either guest).
* **From outside**, packets arrive for each VM at ``rx_rate`` per second (its device's
  parameter), evenly spaced, carrying opaque data (zero pages).

A VM's device that receives a packet with no buffer posted drops it (``net_rx_dropped``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import numpy.typing as npt

__all__ = ["NIC", "WIRE", "Packet"]

#: The outside world's node.
WIRE = "eth0"
BRIDGE = "br0"


@dataclass
class Packet:
    """A packet on its way: who sent it, to whom, its size and data (a token per page)."""

    source: str
    destination: str
    nbytes: int
    tokens: npt.NDArray[np.uint64]
    #: Called when the packet has left the sender (transmitted, or handed to the bridge).
    sent: Callable[[], None] = field(default=lambda: None, repr=False)


class NIC:
    """The host's NIC and bridge (one per host: every net device reaches the same one)."""

    def __init__(self, after: Callable[[int, Callable[[], None]], None], bandwidth: int, latency: int) -> None:
        self._after = after
        self.bandwidth = bandwidth
        self.latency = latency
        self.bridge_latency = 5_000
        self.graph: nx.Graph[str] = nx.Graph()
        self.graph.add_node(WIRE, kind="nic")
        self.graph.add_node(BRIDGE, kind="bridge")
        self.graph.add_edge(WIRE, BRIDGE)
        self._deliver: dict[str, Callable[[Packet], None]] = {}
        self._queues: dict[str, deque[Packet]] = {}
        self._turns: deque[str] = deque()  # interfaces with packets waiting, in round-robin order
        self._busy = False
        #: Bytes and packets sent on the wire, and copied across the bridge.
        self.wire_bytes = self.wire_packets = self.bridge_bytes = self.bridge_packets = 0
        #: Packets each interface sent on the wire, in the order the NIC took them.
        self.wire_order: list[str] = []

    @staticmethod
    def vif(vm: str) -> str:
        return f"vif-{vm}"

    def attach(self, vm: str, deliver: Callable[[Packet], None]) -> str:
        """Plug a VM's interface into the bridge; ``deliver(packet)`` receives its packets."""
        vif = self.vif(vm)
        if vif in self._deliver:
            raise ValueError(f"VM {vm!r} already has an interface on the bridge")
        self.graph.add_node(vif, kind="vif")
        self.graph.add_edge(BRIDGE, vif)
        self._deliver[vif] = deliver
        self._queues[vif] = deque()
        return vif

    def send(self, packet: Packet) -> None:
        """Send from ``packet.source`` (an interface) to ``packet.destination`` (``eth0`` or an
        interface): queued for the wire, or across the bridge."""
        if packet.destination not in self.graph:
            raise ValueError(f"no interface {packet.destination!r} on the host's bridge")
        path = nx.shortest_path(self.graph, packet.source, packet.destination)
        if WIRE not in path:
            self.bridge_bytes += packet.nbytes
            self.bridge_packets += 1
            packet.sent()
            self._after(self.bridge_latency, lambda: self._deliver[packet.destination](packet))
            return
        queue = self._queues[packet.source]
        if not queue:
            self._turns.append(packet.source)
        queue.append(packet)
        if not self._busy:
            self._transmit()

    def _transmit(self) -> None:
        if not self._turns:
            self._busy = False
            return
        self._busy = True
        vif = self._turns.popleft()
        queue = self._queues[vif]
        packet = queue.popleft()
        if queue:
            self._turns.append(vif)  # its next packet waits for the others' turns
        self.wire_order.append(vif)
        self.wire_bytes += packet.nbytes
        self.wire_packets += 1
        self._after(-(-packet.nbytes * 8 * 1_000_000_000 // self.bandwidth), lambda: self._done(packet))

    def _done(self, packet: Packet) -> None:
        packet.sent()
        self._transmit()

    def receive(self, vm: str, packet: Packet) -> None:
        """A packet from outside reaches the NIC for ``vm`` (after the wire's latency)."""
        self._after(self.latency, lambda: self._deliver[self.vif(vm)](packet))
