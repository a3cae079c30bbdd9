"""Layer 3, the guest: the reference guest OS (processes, page tables, page faults, swap,
fork), its kernel's code as instruction blocks, and the operations workloads yield."""
