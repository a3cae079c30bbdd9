"""VMs described as operators describe them: libvirt domain XML and Xen's xl.cfg.

:mod:`~vframework.formats.libvirt` and :mod:`~vframework.formats.xl` read their format into
:class:`~vframework.formats.domains.Domain` records (what the simulator models, in the
formats' own terms: shares, a cap in percent of a CPU, a balloon target) and list every element
or key they do not model, by name; :func:`~vframework.formats.domains.to_scenario` turns the
records into scenario data for a host, naming each value by the parameter the host's scheduler
and memory policy declare for it. :func:`~vframework.formats.libvirt.export` writes a scenario's
VMs back as domain XML.
"""
