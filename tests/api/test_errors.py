"""One exception hierarchy: every error the kernel raises on purpose derives from VframeworkError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import vframework
from vframework.errors import VframeworkError
from vframework.sim.engine import Interrupt

#: Control flow, not an error: thrown into a simulated process (like SimPy's Interrupt).
NOT_ERRORS = {Interrupt}


def test_every_kernel_exception_is_a_vframework_error() -> None:
    strays = []
    for info in pkgutil.walk_packages(vframework.__path__, "vframework."):
        if info.name.endswith("__main__"):
            continue  # running it is the command line
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and obj not in NOT_ERRORS
                and not issubclass(obj, VframeworkError)
            ):
                strays.append(f"{module.__name__}.{name}")
    assert not strays, f"exceptions outside vframework.errors' hierarchy: {strays}"
