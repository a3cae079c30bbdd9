"""The metrics a run reports: names, units and meanings (the metrics reference is built from here).

Names follow the tools operators already read: esxtop's for memory (in pages), Linux KSM's for
page sharing, and ``cpu_*_ns`` for CPU time. Counters are plain ints in a dict per VM and one
for the host; the sampler copies them into the time series, so nothing is computed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from vframework.machine.isa import EXIT_REASONS

__all__ = ["HOST_METRICS", "VM_METRICS", "Metric", "new_host_counters", "new_vm_counters"]


@dataclass(frozen=True)
class Metric:
    """One reported quantity."""

    name: str
    unit: str
    description: str
    #: "counter" (only grows) or "gauge" (a level that goes up and down).
    kind: str = "counter"


VM_METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("cpu_run_ns", "ns", "time the VM's vCPUs ran on physical CPUs"),
        Metric("cpu_ready_ns", "ns", "time the VM's vCPUs were runnable but not running"),
        Metric("cpu_irq_ns", "ns", "time spent servicing this VM's own interrupts, on any CPU (charged to it)"),
        Metric("cpu_stolen_ns", "ns", "time taken from this VM's slices to serve other VMs' or the host's interrupts"),
        Metric("cpu_wakeups", "wakeups", "times a vCPU became runnable after blocking"),
        Metric("cpu_wakeup_latency_ns", "ns", "total time from wake-up to running (divide by cpu_wakeups)"),
        Metric("mem_target", "pages", "memory the policy grants the VM now", "gauge"),
        Metric("mem_granted", "pages", "guest-physical pages backed by a machine frame", "gauge"),
        Metric(
            "mem_consumed",
            "pages",
            "machine frames the VM consumes: its private frames, plus 1/n of each frame it shares n ways "
            "(rounded down to whole pages)",
            "gauge",
        ),
        Metric("mem_active", "pages", "pages referenced since the previous sample", "gauge"),
        Metric("mem_shared", "pages", "guest-physical pages backed by a frame shared copy-on-write", "gauge"),
        Metric("share_breaks", "pages", "writes to shared pages that took a private copy (or the last mapping)"),
        Metric("guest_page_faults", "faults", "faults on unmapped VPNs, handled by the guest kernel"),
        Metric("hidden_page_faults", "faults", "faults on PPNs with no machine frame, fixed unseen by the hypervisor"),
        Metric("syscalls", "calls", "system calls made by guest processes"),
        Metric("virq_syscall", "events", "system calls delivered to the guest kernel"),
        Metric("virq_page_fault", "events", "page faults delivered to the guest kernel (as virtual interrupts)"),
        Metric("virq_exception", "events", "processor exceptions (divide error...) delivered to the guest kernel"),
        Metric("virq_device", "events", "device interrupts delivered to the guest as virtual interrupts"),
        Metric(
            "virq_timer",
            "events",
            "timer interrupts delivered to the guest (its kernel's ticks at hz, and its sleep timers)",
        ),
        Metric("io_requests", "requests", "I/O requests submitted by the guest"),
        Metric("io_bytes", "bytes", "bytes moved by the guest's I/O requests"),
        Metric("disk_requests", "requests", "I/O requests the guest submitted to its disk (storage operations)"),
        Metric("disk_bytes", "bytes", "bytes the guest's disk requests read or wrote"),
        Metric("instructions_direct", "instructions", "guest instructions executed directly on the CPU"),
        Metric("instructions_emulated", "instructions", "guest instructions the hypervisor emulated"),
        Metric(
            "traps",
            "traps",
            "entries into a software hypervisor by a trap: privileged instructions, and the system calls, faults "
            "and interrupts it reflects into the guest",
        ),
        Metric("hypercalls", "calls", "explicit hypercalls that entered the hypervisor"),
        Metric("hypercall_errors", "calls", "hypercalls refused with an error code (nothing changed)"),
        Metric("vm_exits", "exits", "VM exits (hardware-assisted mode), all reasons"),
        *(Metric(f"vm_exits_{r}", "exits", f"VM exits for reason {r}") for r in EXIT_REASONS),
        Metric("bt_translations", "blocks", "guest kernel blocks binary-translated (translation-cache misses)"),
        Metric("bt_cache_hits", "blocks", "guest kernel blocks run from the translation cache"),
        Metric("bt_callouts", "instructions", "sensitive instructions replaced by callouts into the hypervisor"),
        Metric("tlb_hits", "accesses", "memory references that hit the TLB"),
        Metric("tlb_misses", "accesses", "memory references that missed the TLB and walked"),
        Metric("page_walk_refs", "references", "memory references made by page walks (24 per nested 4-level walk)"),
        Metric("tlb_flushes", "flushes", "TLB flushes caused by this VM (page-table switches, VM switches)"),
        Metric("shadow_pt_updates", "updates", "shadow page-table entries updated after guest PTE writes"),
        Metric("shadow_faults", "faults", "hidden faults filling a shadow entry from guest page table o P2M"),
        Metric("cow_faults", "faults", "guest copy-on-write faults (a write to a page shared after fork)"),
        Metric("forks", "forks", "guest processes forked"),
        Metric("swap_outs", "pages", "guest pages written to the guest's swap area"),
        Metric("swap_ins", "pages", "guest pages read back from the guest's swap area"),
        Metric("world_switches", "switches", "hosted hypervisor: switches between the VMM and the host OS"),
        Metric("mem_balloon", "pages", "guest pages held by the balloon (given back to the host)", "gauge"),
        Metric("mem_swapped", "pages", "guest pages the hypervisor paged out to its own swap", "gauge"),
        Metric("host_swap_outs", "pages", "guest pages the hypervisor paged out"),
        Metric("host_swap_ins", "pages", "guest pages the hypervisor read back (each a hidden fault and a stall)"),
        Metric(
            "mem_blocked_ns",
            "ns",
            "time the VM was blocked because the host was low on memory and it held more than its target",
        ),
        Metric("double_paging", "pages", "pages the guest swapped out that the hypervisor had to read back first"),
        Metric("io_completed", "requests", "I/O requests a device plugin completed"),
        Metric("io_errors", "requests", "I/O requests a device refused or failed (a bad grant, a garbage slot)"),
        Metric("io_bytes_copied", "bytes", "I/O data copied between guest memory and a device model (0: zero copy)"),
        Metric("io_register_accesses", "accesses", "device register reads and writes by the guest's drivers"),
        Metric("events_sent", "events", "event-channel notifications sent to the VM"),
        Metric(
            "events_delivered", "events", "event-channel events the VM's upcall handler took (sent minus coalesced)"
        ),
        Metric("grant_maps", "pages", "guest pages a back end mapped through the VM's grant table"),
        Metric("net_packets_sent", "packets", "packets the VM's net device put on the wire or the bridge"),
        Metric("net_packets_received", "packets", "packets delivered into the VM's receive buffers"),
        Metric("net_bytes_sent", "bytes", "bytes of the packets the VM's net device sent"),
        Metric("net_bytes_received", "bytes", "bytes delivered into the VM's receive buffers"),
        Metric("net_rx_dropped", "packets", "packets that reached the VM with no receive buffer posted"),
        Metric("net_bridge_bytes", "bytes", "bytes the host's bridge copied into the VM from other VMs on the host"),
        Metric("net_pages_flipped", "pages", "receive buffers exchanged for frames holding a packet (page flipping)"),
    ]
}

HOST_METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("elapsed_ns", "ns", "simulated time so far", "gauge"),
        Metric("hypervisor_ns", "ns", "CPU time spent in the hypervisor (switches, services), all CPUs"),
        Metric("idle_ns", "ns", "CPU time with nothing to run, all CPUs"),
        Metric("free_frames", "frames", "machine frames not in use", "gauge"),
        Metric("reclaim_state", "state", "memory reclamation state: 0 high, 1 soft, 2 hard, 3 low (ESX)", "gauge"),
        Metric("private_frames", "frames", "machine frames owned by exactly one VM", "gauge"),
        Metric("shared_frames", "frames", "machine frames shared copy-on-write", "gauge"),
        Metric("pages_shared", "frames", "shared frames in use (KSM's pages_shared)", "gauge"),
        Metric("pages_sharing", "pages", "mappings of shared frames beyond the first of each: pages saved", "gauge"),
        Metric(
            "pages_unshared",
            "pages",
            "pages seen once and not shared (KSM's unstable tree)",
            "gauge",
        ),
        Metric("pages_volatile", "pages", "pages whose content changed too fast to share (KSM)", "gauge"),
        Metric("full_scans", "scans", "times a sharing scanner went over all mergeable memory"),
        Metric("pages_scanned", "pages", "pages a sharing scanner examined"),
        Metric("hint_frames", "pages", "pages a hint-based scanner holds as hints (seen once, not shared)", "gauge"),
        Metric("hypervisor_frames", "frames", "machine frames the hypervisor keeps for itself", "gauge"),
        Metric("vcpu_switches", "switches", "times a physical CPU switched from one vCPU to another"),
        Metric("interrupts", "interrupts", "external interrupts serviced by physical CPUs (device and host timer)"),
        Metric("events_fired", "events", "engine events fired (a measure of simulation work)"),
    ]
}


def new_vm_counters() -> dict[str, int]:
    """A VM's counters, all zero."""
    return dict.fromkeys(VM_METRICS, 0)


def new_host_counters() -> dict[str, int]:
    """The host's counters, all zero."""
    return dict.fromkeys(HOST_METRICS, 0)
