"""The plugin manager: loads the ``vframework`` entry-point group and indexes components by kind.

Standard plugins and third-party ones take the same path: an installed distribution declares
an entry point in the ``vframework`` group, the manager imports it, registers it with pluggy
and calls its registration hooks once. Errors name the distribution at fault.

``VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points (tests then register plugins
by hand with :meth:`PluginManager.register`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from vframework.api import hookspecs
from vframework.api.contract import KINDS, Component

__all__ = ["PluginManager", "PluginError", "PluginInfo", "hookimpl", "REGISTER_HOOKS"]

hookimpl = pluggy.HookimplMarker("vframework")

#: Registration hook of each kind.
REGISTER_HOOKS = {
    "scheduler": "register_schedulers",
    "memory_policy": "register_memory_policies",
    "memory_service": "register_memory_services",
    "mode": "register_modes",
    "device": "register_devices",
    "workload": "register_workloads",
}
_BASES = {kind: cls for cls in Component.__subclasses__() for kind in [cls.kind] if kind}


class PluginError(RuntimeError):
    """A plugin failed to load, registered something invalid, or raised in a hook."""


@dataclass
class PluginInfo:
    """One loaded plugin: its distribution and what it registered."""

    name: str
    version: str
    plugin_name: str
    components: dict[str, list[str]] = field(default_factory=dict)


class PluginManager:
    """pluggy's manager plus the component registry."""

    def __init__(self, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager("vframework")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        #: kind -> name -> component class
        self.components: dict[str, dict[str, type[Component]]] = {k: {} for k in KINDS}
        self._provider: dict[tuple[str, str], str] = {}
        if autoload is None:
            autoload = os.environ.get("VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
        if autoload:
            self.load_entry_points()

    def load_entry_points(self) -> None:
        """Import and register every plugin in the ``vframework`` entry-point group."""
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
                raise PluginError(
                    f"plugin distribution {dist_name!r} (entry point {ep.name} = {ep.value}) "
                    f"failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            self.register(plugin, dist_name, version)

    def register(self, plugin: Any, dist_name: str, version: str = "0") -> PluginInfo:
        """Register a plugin module or object and index the components its hooks return."""
        if dist_name in self.plugins:
            raise PluginError(f"a plugin called {dist_name!r} is already registered")
        self.pm.register(plugin, name=dist_name)
        info = PluginInfo(dist_name, version, dist_name)
        try:
            self._check_hook_names(plugin, dist_name)
            for kind, hook_name in REGISTER_HOOKS.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is not plugin:
                        continue
                    classes = self._call(impl, hook_name, {})
                    names = [self._index(kind, cls, dist_name, hook_name) for cls in classes or []]
                    if names:
                        info.components.setdefault(kind, []).extend(names)
        except PluginError:
            self.pm.unregister(plugin)
            for key in [k for k, d in self._provider.items() if d == dist_name]:
                del self.components[key[0]][key[1]]
                del self._provider[key]
            raise
        self.plugins[dist_name] = info
        return info

    def _check_hook_names(self, plugin: Any, dist_name: str) -> None:
        """A hookimpl whose name matches no hookspec (a typo) is an error, not silently ignored."""
        for impl in self.pm.get_hookcallers(plugin) or []:
            if impl.spec is None:
                impls = [i for i in impl.get_hookimpls() if i.plugin is plugin and not i.optionalhook]
                if impls:
                    known = ", ".join(sorted(n for n in dir(self.pm.hook) if not n.startswith("_")
                                             and getattr(self.pm.hook, n).spec is not None))
                    raise PluginError(
                        f"plugin {dist_name!r} implements hook {impl.name!r}, which vframework does not "
                        f"define (a typo?); known hooks: {known}"
                    )

    def _index(self, kind: str, cls: Any, dist_name: str, hook_name: str) -> str:
        base = _BASES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {dist_name!r}: {hook_name}() returned {cls!r}, "
                f"which is not a subclass of vframework.{base.__name__}"
            )
        name = cls.name
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {dist_name!r}: {cls.__qualname__} has no `name`")
        if name in self.components[kind]:
            raise PluginError(
                f"plugin {dist_name!r} registers the {kind} {name!r}, "
                f"which plugin {self._provider[(kind, name)]!r} already registered"
            )
        self.components[kind][name] = cls
        self._provider[(kind, name)] = dist_name
        return name

    @staticmethod
    def _call(impl: Any, hook_name: str, kwargs: dict[str, Any]) -> Any:
        try:
            return impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} raised in hook {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a lifecycle hook on every plugin, in registration order; errors name the plugin."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        # get_hookimpls() lists implementations in registration order (pluggy itself calls
        # them last-registered first); observers are documented to run in registration order.
        return [self._call(impl, hook_name, kwargs) for impl in impls]

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class registered under ``name``; KeyError lists the installed names."""
        try:
            return self.components[kind][name]
        except KeyError:
            raise KeyError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: str) -> str:
        """'unknown scheduler "x"; installed: a, b' (the message for a bad component name)."""
        installed = ", ".join(sorted(self.components[kind])) or "none"
        return f"unknown {kind.replace('_', ' ')} {name!r}; installed: {installed}"

    def provider(self, kind: str, name: str) -> str:
        """The distribution that registered a component."""
        return self._provider[(kind, name)]

    def versions(self) -> list[dict[str, str]]:
        """``[{"name", "version"}]`` of every plugin, sorted by name (for summary.json)."""
        return [{"name": p.name, "version": p.version} for p in sorted(self.plugins.values(), key=lambda p: p.name)]
