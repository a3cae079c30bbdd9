"""Device I/O: the shared ring of Xen's split drivers (and, later, event channels and grants)."""
