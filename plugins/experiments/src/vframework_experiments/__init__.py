"""Standard experiments for vframework: scenarios built in code, run, and reduced to tables,
checks and plots.

* ``cpu-shares``: shares 3:2:1 under ``proportional``; a 50% cap and BOOST under ``credit``;
* ``mmu``: fork-heavy, context-switch-heavy and large working sets under each memory
  virtualization;
* ``modes``: lmbench-style kernel paths under each mode, native and hosted;
* ``esx-sharing``: memory shared by ESX's scanner and by KSM as identical VMs are added;
* ``esx-balloon``: a VM ballooned down against one configured at that size;
* ``esx-idle-tax``: the idle memory tax moves memory from an idle VM to an active one;
* ``esx-sampling``: the active-memory estimate rises fast and decays slowly;
* ``io``: emulated and para-virtual (ring) disks under each mode, against native;
* ``aa06``: Adams & Agesen's nanobenchmarks and forkwait on their P4, beside the paper's ratios;
* ``xen03``: Barham et al.'s lmbench rows, native Linux against Xen on their Xeon.

They name components by their registered names only; ``vframework experiment NAME`` reports a
missing plugin with the installed names.
"""

from vframework.api import Experiment, hookimpl

from . import aa06, balloon, cpu_shares, idle_tax, io, mmu, modes, sampling, sharing, xen03

#: The experiments this distribution registers.
EXPERIMENTS: tuple[Experiment, ...] = (
    aa06.aa06,
    cpu_shares.cpu_shares,
    balloon.esx_balloon,
    idle_tax.esx_idle_tax,
    sampling.esx_sampling,
    sharing.esx_sharing,
    io.io,
    mmu.mmu,
    modes.modes,
    xen03.xen03,
)

__all__ = ["EXPERIMENTS"]


@hookimpl
def register_experiments() -> list[Experiment]:
    return list(EXPERIMENTS)
