"""Layer 5, the hypervisor: VMs and vCPUs, the per-CPU dispatch loop and CPU accounting,
machine-frame backing, hypercalls, the machinery of virtualization modes, metrics."""
