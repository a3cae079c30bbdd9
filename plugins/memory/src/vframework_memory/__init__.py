"""Standard memory policies and memory services for vframework.

- ``static`` (policy): each VM gets its configured memory; no overcommitment.
- ``shares`` (policy): ESX's share-based allocation with an idle memory tax, active-memory
  sampling and reclamation states.
- ``working-set`` (policy): targets from each VM's estimated active memory plus headroom.
- ``balloon`` (service): balloon drivers inflate and deflate towards the targets.
- ``host-swap`` (service): the hypervisor pages random guest frames to its own swap device.
- ``esx-sharing`` (service): VMware ESX's content-based page sharing: random scanning, one
  hash table of shared frames and hint frames, a full comparison before sharing.
- ``ksm`` (service): Linux KSM: a linear scan, a stable and an unstable tree keyed by
  content, and a page merged only once its content held still for a whole scan.
"""

from __future__ import annotations

from vframework.api import MemoryPolicy, MemoryService, Params, hookimpl
from vframework_memory.balloon import Balloon
from vframework_memory.esx import EsxSharing
from vframework_memory.host_swap import HostSwap
from vframework_memory.ksm import Ksm
from vframework_memory.shares import SharesPolicy
from vframework_memory.static import StaticPolicy
from vframework_memory.working_set import WorkingSetPolicy

__all__ = ["Balloon", "EsxSharing", "HostSwap", "Ksm", "SharesPolicy", "StaticPolicy", "WorkingSetPolicy"]


@hookimpl
def register_memory_policies() -> list[type[MemoryPolicy[Params]]]:
    return [SharesPolicy, StaticPolicy, WorkingSetPolicy]


@hookimpl
def register_memory_services() -> list[type[MemoryService[Params]]]:
    return [Balloon, EsxSharing, HostSwap, Ksm]
