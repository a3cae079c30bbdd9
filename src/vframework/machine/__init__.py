"""Layer 2, the physical machine: CPUs and machine memory, the cost model, the instruction set
and its interpreter, the MMU (page walks, TLBs, shadow tables)."""
