"""One run: build the machine, hypervisor and VMs from a scenario, run the engine, collect results.

Data flows one way: scenario -> built objects -> engine events -> counters -> results. The
sampler copies counters into the time series at a fixed simulated interval; the summary is
read from the counters at the end. Nothing here knows a concrete plugin.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from vframework.api.manager import PluginManager
from vframework.api.views import Summary, TimeseriesRow, WorkloadContext
from vframework.guest.os import GuestOS
from vframework.hv.devices import DeviceHost
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.meter import Meter
from vframework.hv.metrics import HOST_METRICS, VM_METRICS
from vframework.hv.vm import VM
from vframework.machine.hardware import HYPERVISOR_OWNER, Machine
from vframework.run.billing import Bill, bill
from vframework.run.scenario import ResolvedVM, Scenario
from vframework.sim.engine import LATE, Engine
from vframework.sim.units import PAGE_SIZE

__all__ = ["HOST_TIMESERIES_METRICS", "TIMESERIES_METRICS", "Simulation"]

#: Columns of timeseries.csv after ``time_ns,vm``.
TIMESERIES_METRICS = tuple(VM_METRICS)
#: Columns of host_timeseries.csv after ``time_ns``.
HOST_TIMESERIES_METRICS = tuple(HOST_METRICS)


class Simulation:
    """A scenario built into live objects, ready to :meth:`run`."""

    def __init__(self, scenario: Scenario, plugins: PluginManager, seed: int | None = None) -> None:
        self.scenario = scenario
        self.plugins = plugins
        config = scenario.config
        self.seed = config.seed if seed is None else seed
        self.engine = Engine(self.seed)
        host = config.host
        self.machine = Machine(host.cpus, host.memory, host.cost_model, host.sockets)
        if host.hypervisor_memory:
            self.machine.memory.allocate(-(-host.hypervisor_memory // PAGE_SIZE), HYPERVISOR_OWNER)
        scheduler = scenario.scheduler.cls(scenario.scheduler.params, host.cpus)
        policy = scenario.memory_policy.cls(scenario.memory_policy.params)
        services = [s.cls(s.params) for s in scenario.memory_services]
        self.hypervisor = Hypervisor(
            self.engine,
            self.machine,
            scheduler,
            policy,
            services,
            host.irq_affinity,
            arch=host.arch,
            hosted=host.hypervisor_type == "hosted",
            host_os_load=host.host_os_load,
            page_levels=host.page_levels,
            tlb_entries=host.tlb_entries,
            tlb_tagged=host.tlb_tagged,
        )
        self.hypervisor.on_vm_halted = self._vm_halted
        #: The priced run, once :meth:`run` has finished (None when billing is disabled).
        self.bill: Bill | None = None
        #: The summary :meth:`run` returned (None before it has finished).
        self.result: Summary | None = None
        self.meter: Meter | None = None
        self.vms: list[VM] = []
        self.timeseries: list[TimeseriesRow] = []
        #: The host's counters at each sample: ``(time_ns, *metrics)`` rows.
        self.host_timeseries: list[tuple[int, ...]] = []
        self._destroyed: set[int] = set()
        self.plugins.call("simulation_configured", scenario=scenario)
        for index, spec in enumerate(scenario.vms):
            self._build_vm(index, spec)
        if scenario.billing is not None:
            storage = {
                vm.name: spec.config.swap + sum(d.storage_bytes() for d in vm.devices.values())
                for vm, spec in zip(self.vms, scenario.vms, strict=True)
            }
            self.meter = Meter(self.vms, storage, config.billing_interval, host.cpus)

    def _build_vm(self, index: int, spec: ResolvedVM) -> None:
        cfg = spec.config
        vm = VM(
            index,
            cfg.name,
            cfg.vcpus,
            cfg.memory // PAGE_SIZE,
            spec.scheduler_params,
            spec.policy_params,
            cfg.swap // PAGE_SIZE,
            cfg.image,
        )
        vm.balloon_driver = cfg.balloon
        vm.event_channels = cfg.event_channels
        vm.page_struct_bytes = cfg.page_struct_bytes
        vm.hz = cfg.hz
        vm.tickless = cfg.tickless
        vm.share_pages = cfg.share_pages
        self.hypervisor.attach_mode(vm, spec.mode.cls, spec.mode.params)
        vm.guest = GuestOS(vm, self.hypervisor)
        for dev in spec.devices:
            vm.devices[dev.cls.serves] = dev.cls(dev.params, DeviceHost(self.hypervisor, vm))
        workload_cls = spec.workload.cls
        for vcpu in vm.vcpus:
            rng = self.engine.rng(f"workload:{vm.name}:{vcpu.index}")
            context = WorkloadContext(vm.name, vcpu.index, vm.memory_pages, rng, self.machine.costs.clock_hz)
            workload = workload_cls(spec.workload.params, context)
            vcpu.process = vm.guest.spawn(workload.run(), workload.address_space_pages(), workload.content_layout())
        self.hypervisor.add_vm(vm)
        self.vms.append(vm)
        self.plugins.call("vm_created", simulation=self, vm=vm)

    def _provider(self, kind: str, name: str) -> str:
        try:
            return self.plugins.provider(kind, name)
        except KeyError:  # registered in-process (a test), not by a distribution
            return ""

    def _vm_halted(self, vm: VM) -> None:
        if vm.id not in self._destroyed:
            self._destroyed.add(vm.id)
            self.plugins.call("vm_destroyed", simulation=self, vm=vm)

    def _sample_event(self, interval: int) -> None:
        self._sample()
        # Every sample, not only the first, runs LATE: it sees every event of its instant.
        self.engine.schedule(interval, self._sample_event, interval, priority=LATE)

    def _sample(self) -> None:
        self.hypervisor.sync()
        now = self.engine.now
        for vm in self.vms:
            c = vm.counters
            if vm.guest is not None and not self.hypervisor.memory_policy.estimates_active:
                c["mem_active"] = vm.guest.sample_active()
            self.timeseries.append((now, vm.name, *(c[m] for m in TIMESERIES_METRICS)))
        host = self.hypervisor.counters
        self.host_timeseries.append((now, *(host[m] for m in HOST_TIMESERIES_METRICS)))
        if self.meter is not None:
            self.meter.observe(now, host)

    def run(self, progress: Callable[[int, int], None] | None = None, steps: int = 100) -> Summary:
        """Run to the scenario's duration; returns the summary (see :meth:`summary`)."""
        config = self.scenario.config
        duration = config.duration
        self.hypervisor.start()
        # The sampler runs LATE so a sample sees every event of its instant.
        self.engine.schedule(0, self._sample_event, config.sample_interval, priority=LATE)
        self.plugins.call("simulation_started", simulation=self)
        step = max(1, duration // steps)
        t = 0
        while t < duration:
            t = min(duration, t + step)
            self.engine.run(until=t)
            if progress:
                progress(t, duration)
        self.hypervisor.sync()
        if not self.timeseries or self.timeseries[-1][0] != duration:
            self._sample()
        for vm in self.vms:
            self._vm_halted(vm)
        if self.meter is not None and self.scenario.billing is not None:
            intervals = self.meter.close(self.engine.now, self.hypervisor.counters)
            pricing = self.scenario.billing
            self.bill = bill(
                intervals,
                [vm.name for vm in self.vms],
                config.billing,
                pricing.cls(pricing.params),
                self.meter.interval_ns,
                self._provider("billing", pricing.name),
            )
        summary = self.result = self.summary()
        # Observers get their own copy: whatever they do to it, the written results stay as run.
        self.plugins.call("simulation_finished", simulation=self, summary=copy.deepcopy(summary))
        return summary

    def summary(self) -> Summary:
        """The run's results as plain data (written as summary.json)."""
        summary: Summary = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "sim_time_ns": self.engine.now,
            "plugins": self.plugins.versions(),
            "components": {
                "scheduler": self.scenario.scheduler.name,
                "memory_policy": self.scenario.memory_policy.name,
                "memory_services": [s.name for s in self.scenario.memory_services],
                "vms": {
                    spec.config.name: {
                        "mode": spec.mode.name,
                        "workload": spec.workload.name,
                        "devices": [d.name for d in spec.devices],
                    }
                    for spec in self.scenario.vms
                },
            },
            "host": dict(self.hypervisor.counters),
            "vms": {vm.name: dict(vm.counters) for vm in self.vms},
        }
        if self.bill is not None:
            summary["billing"] = self.bill.summary()
        return summary
