"""The plugin manager: loads the ``vframework`` entry-point group and indexes what plugins provide.

Standard plugins and third-party ones take the same path: an installed distribution declares
an entry point in the ``vframework`` group, the manager imports it, registers it with pluggy
and calls its registration hooks once. Components are indexed by kind and name, experiments by
name; a name registered twice, a class that is not of its kind or leaves an abstract method
unimplemented, and a hook that raises are errors naming the distribution at fault.

Lifecycle hooks are called through pluggy's hook callers (``pm.hook.<name>(...)``), so the
hookimpl options mean what they mean in pluggy: ``tryfirst`` implementations run before the
others, ``trylast`` ones after, and ``hookwrapper`` / ``wrapper`` implementations wrap the
call. Within each of those groups, implementations run in *registration order* (entry points
are registered sorted by name): pluggy calls the last registered first, so the manager
registers the plugins with pluggy in reverse (see :meth:`PluginManager.register`).

``VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points (tests then register plugins
by hand with :meth:`PluginManager.register`).
"""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import CodeType
from typing import TYPE_CHECKING, Any, Literal, overload

import pluggy

from vframework.api import hookspecs
from vframework.api.contract import (
    KINDS,
    Billing,
    Component,
    Device,
    MemoryPolicy,
    MemoryService,
    Mode,
    Scheduler,
    Workload,
)
from vframework.api.experiments import Experiment
from vframework.api.params import Params
from vframework.errors import PluginError

if TYPE_CHECKING:
    from pluggy import HookImpl

__all__ = ["EXPERIMENT", "LISTED", "REGISTER_HOOKS", "PluginError", "PluginInfo", "PluginManager", "hookimpl"]

hookimpl = pluggy.HookimplMarker("vframework")

#: Registration hook of each component kind.
REGISTER_HOOKS = {
    "scheduler": "register_schedulers",
    "memory_policy": "register_memory_policies",
    "memory_service": "register_memory_services",
    "mode": "register_modes",
    "device": "register_devices",
    "workload": "register_workloads",
    "billing": "register_billing",
}
#: What ``register_experiments()`` provides, as listed beside the component kinds.
EXPERIMENT = "experiment"
#: Everything a plugin can register, in the order it is listed (``vframework plugins``).
LISTED = (*KINDS, EXPERIMENT)
_BASES = {kind: cls for cls in Component.__subclasses__() for kind in [cls.kind] if kind}


@dataclass
class PluginInfo:
    """One loaded plugin: its distribution and what it registered (kind -> names; experiments
    under ``"experiment"``)."""

    name: str
    version: str
    plugin_name: str
    components: dict[str, list[str]] = field(default_factory=dict)


class PluginManager:
    """pluggy's manager plus the component and experiment registries."""

    def __init__(self, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager("vframework")
        self.pm.add_hookspecs(hookspecs)
        #: dist name -> what it registered, in registration order.
        self.plugins: dict[str, PluginInfo] = {}
        #: kind -> name -> component class (a subclass of the kind's base: see :meth:`get`)
        self.components: dict[str, dict[str, type[Component[Params]]]] = {k: {} for k in KINDS}
        #: name -> experiment
        self.experiments: dict[str, Experiment] = {}
        self._provider: dict[tuple[str, str], str] = {}
        #: dist name -> the registered plugin object, in registration order.
        self._objects: dict[str, object] = {}
        #: dist name -> why it could not be imported: it breaks only the scenarios that name
        #: what it would have provided.
        self.broken: dict[str, str] = {}
        if autoload is None:
            autoload = os.environ.get("VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
        if autoload:
            self.load_entry_points()

    def load_entry_points(self) -> None:
        """Import and register every plugin in the ``vframework`` entry-point group.

        A plugin that fails to import is left out and recorded in :attr:`broken`, so that the
        other plugins still work (a plugin that imports but registers something invalid is a
        :class:`PluginError`: it is broken, not missing)."""
        eps = sorted(metadata.entry_points(group="vframework"), key=lambda e: (e.name, e.value))
        for ep in eps:
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else ep.name
            version = dist.version if dist is not None else "unknown"
            if dist_name in self.plugins:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.broken[dist_name] = (
                    f"plugin distribution {dist_name!r} (entry point {ep.name} = {ep.value}) "
                    f"failed to import: {type(exc).__name__}: {exc}"
                )
                continue
            self.register(plugin, dist_name, version)

    def register(self, plugin: object, dist_name: str, version: str = "0") -> PluginInfo:
        """Register a plugin module or object and index what its registration hooks return.

        Nothing is kept if any of it is invalid (the error names ``dist_name``). Once accepted,
        the plugins are registered with pluggy again in reverse registration order, so that
        pluggy's last-registered-first calls run them in registration order.
        """
        if dist_name in self.plugins:
            raise PluginError(f"a plugin called {dist_name!r} is already registered")
        try:
            self.pm.register(plugin, name=dist_name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin {dist_name!r} cannot be registered: {exc}") from exc
        info = PluginInfo(dist_name, version, dist_name)
        try:
            self._check_hook_names(plugin, dist_name)
            for kind, hook_name in REGISTER_HOOKS.items():
                for classes in self._call_registration(plugin, dist_name, hook_name):
                    names = [self._index(kind, cls, dist_name, hook_name) for cls in classes or []]
                    if names:
                        info.components.setdefault(kind, []).extend(names)
            for experiments in self._call_registration(plugin, dist_name, "register_experiments"):
                names = [self._index_experiment(exp, dist_name) for exp in experiments or []]
                if names:
                    info.components.setdefault(EXPERIMENT, []).extend(names)
        except PluginError:
            self.pm.unregister(plugin)
            for key in [k for k, d in self._provider.items() if d == dist_name]:
                del self._registry(key[0])[key[1]]
                del self._provider[key]
            raise
        self.plugins[dist_name] = info
        self._objects[dist_name] = plugin
        self._register_in_call_order()
        return info

    def _register_in_call_order(self) -> None:
        """Register every plugin with pluggy again, last one first: pluggy calls the
        implementations of a hook last-registered first, so they then run in registration order
        (within pluggy's tryfirst / plain / trylast groups, wrappers outermost-first)."""
        for name in self._objects:
            self.pm.unregister(name=name)
        for name, plugin in reversed(self._objects.items()):
            self.pm.register(plugin, name=name)

    def _call_registration(self, plugin: object, dist_name: str, hook_name: str) -> list[Iterable[object] | None]:
        """Call registration hook ``hook_name`` of ``plugin`` alone (through pluggy); what it
        returned, not yet checked (see :meth:`_index`)."""
        if not any(impl.plugin is plugin for impl in getattr(self.pm.hook, hook_name).get_hookimpls()):
            return []
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        try:
            return list(self.pm.subset_hook_caller(hook_name, remove_plugins=others)())
        except Exception as exc:
            raise PluginError(f"plugin {dist_name!r} raised in hook {hook_name}: {type(exc).__name__}: {exc}") from exc

    def _check_hook_names(self, plugin: object, dist_name: str) -> None:
        """A hookimpl whose name matches no hookspec (a typo) is an error, not silently ignored."""
        for impl in self.pm.get_hookcallers(plugin) or []:
            if impl.spec is None:
                impls = [i for i in impl.get_hookimpls() if i.plugin is plugin and not i.optionalhook]
                if impls:
                    known = ", ".join(
                        sorted(
                            n
                            for n in dir(self.pm.hook)
                            if not n.startswith("_") and getattr(self.pm.hook, n).spec is not None
                        )
                    )
                    raise PluginError(
                        f"plugin {dist_name!r} implements hook {impl.name!r}, which vframework does not "
                        f"define (a typo?); known hooks: {known}"
                    )

    def _registry(self, kind: str) -> dict[str, Any]:
        # Any: the experiments or one kind's components, by ``kind``; _add stores either.
        return self.experiments if kind == EXPERIMENT else self.components[kind]

    def _index(self, kind: str, cls: object, dist_name: str, hook_name: str) -> str:
        base = _BASES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {dist_name!r}: {hook_name}() returned {cls!r}, "
                f"which is not a subclass of vframework.{base.__name__}"
            )
        name = cls.name
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {dist_name!r}: {cls.__qualname__} has no `name`")
        if inspect.isabstract(cls):
            raise PluginError(
                f"plugin {dist_name!r}: {kind.replace('_', ' ')} class {cls.__qualname__} does not implement "
                f"{', '.join(_abstract_methods(cls))} (abstract methods of vframework.{base.__name__})"
            )
        return self._add(kind, name, cls, dist_name)

    def _index_experiment(self, exp: object, dist_name: str) -> str:
        if not isinstance(exp, Experiment):
            raise PluginError(
                f"plugin {dist_name!r}: register_experiments() returned {exp!r}, which is not a vframework.Experiment"
            )
        if not isinstance(exp.name, str) or not exp.name:
            raise PluginError(f"plugin {dist_name!r}: register_experiments() returned an experiment with no `name`")
        return self._add(EXPERIMENT, exp.name, exp, dist_name)

    def _add(self, kind: str, name: str, obj: type[Component[Params]] | Experiment, dist_name: str) -> str:
        registry = self._registry(kind)
        if name in registry:
            raise PluginError(
                f"plugin {dist_name!r} registers the {kind.replace('_', ' ')} {name!r}, "
                f"which plugin {self._provider[(kind, name)]!r} already registered"
            )
        registry[name] = obj
        self._provider[(kind, name)] = dist_name
        return name

    def call(self, hook_name: str, **kwargs: object) -> list[object]:
        """Call lifecycle hook ``hook_name`` through pluggy (registration order, see the module
        docstring); returns the implementations' results that are not None, in call order.

        An exception raised by an implementation becomes a :class:`PluginError` naming the
        plugin and the hook.
        """
        caller = getattr(self.pm.hook, hook_name)
        try:
            return list(caller(**kwargs))
        except Exception as exc:
            impl = _raising_impl(caller.get_hookimpls(), exc)
            if impl is None:
                raise
            raise PluginError(
                f"plugin {impl.plugin_name!r} raised in hook {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc

    @overload
    def get(self, kind: Literal["scheduler"], name: str) -> type[Scheduler[Params]]: ...
    @overload
    def get(self, kind: Literal["memory_policy"], name: str) -> type[MemoryPolicy[Params]]: ...
    @overload
    def get(self, kind: Literal["memory_service"], name: str) -> type[MemoryService[Params]]: ...
    @overload
    def get(self, kind: Literal["mode"], name: str) -> type[Mode[Params]]: ...
    @overload
    def get(self, kind: Literal["device"], name: str) -> type[Device[Params]]: ...
    @overload
    def get(self, kind: Literal["workload"], name: str) -> type[Workload[Params]]: ...
    @overload
    def get(self, kind: Literal["billing"], name: str) -> type[Billing[Params]]: ...
    @overload
    def get(self, kind: str, name: str) -> type[Component[Params]]: ...
    def get(self, kind: str, name: str) -> type[Component[Params]]:
        """The component class registered under ``name``; KeyError lists the installed names.

        The class is a subclass of ``kind``'s base class (:meth:`register` refuses any other),
        which is what the overloads by kind say."""
        try:
            return self.components[kind][name]
        except KeyError:
            raise KeyError(self.unknown_message(kind, name)) from None

    def get_experiment(self, name: str) -> Experiment:
        """The experiment registered under ``name``; KeyError lists the installed ones."""
        try:
            return self.experiments[name]
        except KeyError:
            raise KeyError(self.unknown_message(EXPERIMENT, name)) from None

    def unknown_message(self, kind: str, name: str) -> str:
        """'unknown scheduler "x"; installed: a, b' (the message for a bad component or
        experiment name; ``kind`` is a component kind or ``"experiment"``)."""
        installed = ", ".join(sorted(self._registry(kind))) or "none"
        message = f"unknown {kind.replace('_', ' ')} {name!r}; installed: {installed}"
        if self.broken:
            message += f" (not loaded, and perhaps providing it: {', '.join(sorted(self.broken))})"
        return message

    def blame(self, exc: BaseException) -> str | None:
        """Which component an exception escaped from, as one line: the plugin distribution, the
        component's kind and name, the method the kernel called, and where it was raised. None
        when no frame of the traceback runs a method of a registered component."""
        classes = {cls: (kind, name) for kind, reg in self.components.items() for name, cls in reg.items()}
        frames = list(traceback.walk_tb(exc.__traceback__))
        for frame, _ in frames:
            first = frame.f_code.co_varnames[0] if frame.f_code.co_argcount else None
            owner = frame.f_locals.get(first) if first in ("self", "cls") else None
            owner_cls = owner if isinstance(owner, type) else type(owner)
            hit = next((classes[c] for c in getattr(owner_cls, "__mro__", ()) if c in classes), None)
            if hit is None:
                continue
            kind, name = hit
            dist = self._provider.get((kind, name), "?")
            last, line = frames[-1]
            where = f"{os.path.basename(last.f_code.co_filename)}:{line}"
            return (
                f"plugin {dist!r}: {kind.replace('_', ' ')} {name!r} raised in {frame.f_code.co_name}(): "
                f"{type(exc).__name__}: {exc} (at {where})"
            )
        return None

    def provider(self, kind: str, name: str) -> str:
        """The distribution that registered a component (or, with ``kind="experiment"``, an experiment)."""
        return self._provider[(kind, name)]

    def versions(self) -> list[dict[str, str]]:
        """``[{"name", "version"}]`` of every plugin, sorted by name (for summary.json)."""
        return [{"name": p.name, "version": p.version} for p in sorted(self.plugins.values(), key=lambda p: p.name)]


def _abstract_methods(cls: type) -> list[str]:
    """``cls``'s unimplemented abstract methods, in the order the classes define them (bases first)."""
    missing: frozenset[str] = getattr(cls, "__abstractmethods__", frozenset())
    ordered = list(dict.fromkeys(n for klass in reversed(cls.__mro__) for n in vars(klass) if n in missing))
    return ordered + sorted(set(missing) - set(ordered))


def _raising_impl(impls: list[HookImpl], exc: BaseException) -> HookImpl | None:
    """The hook implementation an exception came from: the innermost frame of its traceback
    that runs one of ``impls`` (pluggy calls them from its own frames, and re-raises through
    wrappers, so the innermost one is where it was raised)."""
    by_code: dict[CodeType, list[HookImpl]] = {}
    for impl in impls:
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            by_code.setdefault(code, []).append(impl)
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        candidates = by_code.get(frame.f_code)
        if not candidates:
            continue
        found = candidates[0]
        if len(candidates) > 1:  # one function shared by several plugin objects: match `self`
            first = frame.f_code.co_varnames[0] if frame.f_code.co_varnames else None
            owner = frame.f_locals.get(first) if first else None
            found = next((i for i in candidates if getattr(i.function, "__self__", None) is owner), found)
    return found
