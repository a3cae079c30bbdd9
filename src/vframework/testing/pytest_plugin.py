"""The conformance kit as a pytest plugin: a plugin author checks their component in their own
repository, with pytest's selection (``-k``), reporting and CI integration.

Two ways (see ``docs/pytest.md``):

* ``pytest --vframework-component NAME`` (repeatable; ``kernel`` for the kernel's own properties)
  checks an *installed* component: one test item per property, ``vframework::NAME::PROPERTY``.
* A test class in the author's own test file, for a component class whether installed or not::

      from vframework.testing.pytest_plugin import ConformanceTests

      class TestLottery(ConformanceTests):
          component = LotteryScheduler

  gives one ``test_property[PROPERTY]`` per property of the component's kind.

Either way a property that does not apply to the component is skipped ("not applicable: ..."),
one the component declares in ``known_limitations`` is an xfail (non-strict), and a failed one
shows the kit's report: every distinct failure with its minimal steps, its error, where it was
raised, and the token that replays it.

pytest loads this module in every run of an environment where vframework is installed, so it
imports nothing of the kit until a check is asked for, and adds no test unless asked.
"""

from __future__ import annotations

import contextlib
import inspect
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from vframework.testing.kit import Check, Outcome, Target

__all__ = ["PROFILE_NAMES", "ComponentChecks", "ConformanceItem", "ConformanceSuite", "ConformanceTests"]

#: The kit's profiles (:data:`vframework.testing.profiles.PROFILES`), named here so that the
#: options can be declared without importing Hypothesis.
PROFILE_NAMES = ("default", "ci", "thorough")
#: The marker of the items ``--vframework-component`` adds (``-m vframework`` selects only them).
MARKER = "vframework"
#: The parameter :class:`ConformanceTests` is parametrized by, one planned check per test.
PARAMETER = "vframework_check"


# -- options --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vframework", "vframework conformance kit")
    group.addoption(
        "--vframework-component",
        action="append",
        default=[],
        metavar="NAME",
        dest="vframework_components",
        help="check the installed vframework component NAME (any kind; 'kernel' for the kernel's own "
        "properties): one test per property, vframework::NAME::PROPERTY. Repeatable.",
    )
    group.addoption(
        "--vframework-profile",
        choices=PROFILE_NAMES,
        default=None,
        dest="vframework_profile",
        help="Hypothesis profile of the conformance checks (examples per property); default: 'default', "
        "or a ConformanceTests class's `profile`.",
    )
    group.addoption(
        "--vframework-arch",
        default=None,
        metavar="ARCH",
        dest="vframework_arch",
        help="architecture to check modes on (default: the first each mode declares).",
    )
    group.addoption(
        "--vframework-replay",
        action="append",
        default=[],
        metavar="CHECK=TOKEN",
        dest="vframework_replay",
        help="rerun exactly the example of a failure's replay token (shown with the failure), for the check "
        "COMPONENT::PROPERTY; the other checks are skipped. Repeatable.",
    )
    group.addoption(
        "--vframework-shrink-seconds",
        type=float,
        default=None,
        metavar="S",
        dest="vframework_shrink_seconds",
        help="seconds Hypothesis may spend shrinking the failures of one property (default: the kit's, 20).",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # `--hypothesis-profile vframework-ci`: Hypothesis's own plugin loads the profile in its
    # pytest_configure, so the kit's profiles must be registered first (importing them does).
    hypothesis_profile = config.getoption("hypothesis_profile", None)
    if isinstance(hypothesis_profile, str) and hypothesis_profile.startswith("vframework-"):
        import vframework.testing.profiles  # noqa: F401

    _replays(config)  # a malformed --vframework-replay is a usage error before anything runs
    if config.getoption("vframework_components"):
        config.addinivalue_line("markers", f"{MARKER}: a vframework conformance check (--vframework-component)")
        config.pluginmanager.register(_SelectedComponents(config), "vframework-components")


# -- how a check runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class _RunSettings:
    profile: str
    arch: str | None
    shrink_seconds: float | None
    #: check id -> replay token (``--vframework-replay``); when any is given, only those run.
    replays: dict[str, str]


def _replays(config: pytest.Config) -> dict[str, str]:
    replays = {}
    for value in config.getoption("vframework_replay"):
        check_id, _, token = value.partition("=")  # (tokens are base64: they may end in "=")
        if "::" not in check_id or not token:
            raise pytest.UsageError(
                f"--vframework-replay {value!r}: expected COMPONENT::PROPERTY=TOKEN, as a failure shows it"
            )
        replays[check_id] = token
    return replays


def _run_settings(config: pytest.Config, tests: type[ConformanceTests] | None = None) -> _RunSettings:
    """The command line's choice, else the test class's, else the kit's default."""

    def pick(option: str, attribute: str) -> Any:
        value = config.getoption(option)
        return value if value is not None else getattr(tests, attribute, None)

    return _RunSettings(
        profile=pick("vframework_profile", "profile") or "default",
        arch=pick("vframework_arch", "arch"),
        shrink_seconds=pick("vframework_shrink_seconds", "shrink_seconds"),
        replays=_replays(config),
    )


def _skip_reason(check: Check, settings: _RunSettings) -> str | None:
    """Why nothing runs for a check, or None when its property runs."""
    if check.machine is None:
        prefix = "no property" if check.prop is None else "not applicable"
        return f"{prefix}: {check.skip or 'the property does not apply to the component'}"
    if settings.replays and check.id not in settings.replays:
        return "not replayed (--vframework-replay names other checks)"
    return None


def _marks(check: Check, settings: _RunSettings) -> list[pytest.MarkDecorator]:
    """A check that runs nothing is skipped; a declared limitation is a (non-strict) xfail."""
    reason = _skip_reason(check, settings)
    if reason is not None:
        return [pytest.mark.skip(reason=reason)]
    if check.limitation is not None:
        return [pytest.mark.xfail(reason=f"known limitation: {check.limitation}", strict=False)]
    return []


def _failure_text(check: Check, outcome: Outcome, settings: _RunSettings, rerun: str, installed: bool) -> str:
    target = check.target
    count = len(outcome.failures)
    lines = [
        f"{target.name} ({target.kind}) fails {check.label!r}: {count} distinct failure{'s' if count > 1 else ''} "
        f"in {outcome.examples} examples ({settings.profile} profile, {outcome.seconds:.1f} s)",
        "",
        outcome.report,
    ]
    for i, failure in enumerate(outcome.failures, 1):
        if failure.blob:
            which = f"failure {i}" if count > 1 else "this example"
            replay = shlex.quote(f"{check.id}={failure.blob}")
            lines += ["", f"to rerun exactly {which} (replay token {failure.blob}):"]
            # Under the same profile: a shorter one would cut the example's steps and pass.
            profile = "" if settings.profile == "default" else f" --vframework-profile {settings.profile}"
            lines += [f"  {rerun}{profile} --vframework-replay {replay}"]
    if installed:
        name = shlex.quote(check.target.name)
        lines += ["", f"(`vframework check {name}` also saves replay files, for `vframework check --replay FILE`)"]
    return "\n".join(lines)


def run_conformance_check(check: Check, settings: _RunSettings, rerun: str, installed: bool = False) -> None:
    """Run one planned check under pytest: skip it when nothing runs, fail with the kit's report
    when the property does not hold (the xfail marker of a declared limitation turns that
    into an xfail). ``rerun``: the command that runs this check again (a failure's replay
    option is appended); ``installed``: the component is an installed one."""
    from vframework.testing.kit import run_check

    reason = _skip_reason(check, settings)
    if reason is not None:  # (its skip marker normally skips it before it runs)
        pytest.skip(reason)
    replay = settings.replays.get(check.id)
    if settings.shrink_seconds is None:
        outcome = run_check(check, settings.profile, replay=replay)
    else:
        outcome = run_check(check, settings.profile, shrink_seconds=settings.shrink_seconds, replay=replay)
    if outcome.failures:
        pytest.fail(_failure_text(check, outcome, settings, rerun, installed), pytrace=False)


# -- `--vframework-component NAME`: items for installed components ---------------------------


class _SelectedComponents:
    """Registered when ``--vframework-component`` is given: adds the checks to the session's
    collection, as one more top-level collector beside the test files."""

    def __init__(self, config: pytest.Config) -> None:
        self.names: list[str] = list(config.getoption("vframework_components"))
        self.settings = _run_settings(config)

    def pytest_report_header(self) -> str:
        return f"vframework conformance: {', '.join(self.names)} ({self.settings.profile} profile)"

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report: pytest.CollectReport = yield
        if isinstance(collector, pytest.Session) and report.passed:
            targets = self._targets()
            report.result.append(ConformanceSuite.from_parent(collector, name=MARKER, nodeid=MARKER, targets=targets))
        return report

    def _targets(self) -> list[Target]:
        from vframework.api.manager import PluginManager
        from vframework.testing.kit import select_targets

        try:
            plugins = PluginManager()
        except Exception as exc:
            raise pytest.UsageError(
                f"--vframework-component: the installed vframework plugins do not load: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            return select_targets(plugins, self.names)
        except KeyError as exc:
            raise pytest.UsageError(f"--vframework-component: {exc.args[0]}") from None


class ConformanceSuite(pytest.Collector):
    """``vframework``: the components named by ``--vframework-component``."""

    def __init__(self, *, targets: list[Target], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.add_marker(MARKER)

    def collect(self) -> Iterator[ComponentChecks]:
        names = [t.name for t in self.targets]
        for target in self.targets:
            # A name two kinds share (or named twice) gets its kind, so node ids stay unique.
            name = target.name if names.count(target.name) == 1 else f"{target.name} ({target.kind})"
            yield ComponentChecks.from_parent(self, name=name, target=target)


class ComponentChecks(pytest.Collector):
    """One component's checks: every property of its kind, planned."""

    def __init__(self, *, target: Target, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.extra_keyword_matches.add(target.kind)

    def collect(self) -> Iterator[ConformanceItem]:
        from vframework.testing.kit import plan

        for check in plan([self.target], _run_settings(self.config).arch):
            yield ConformanceItem.from_parent(self, name=check.label, check=check)


class ConformanceItem(pytest.Item):
    """One property of one installed component."""

    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        for mark in _marks(check, _run_settings(self.config)):
            self.add_marker(mark)

    def runtest(self) -> None:
        rerun = f"pytest --vframework-component {shlex.quote(self.check.target.name)} -m {MARKER}"
        run_conformance_check(self.check, _run_settings(self.config), rerun, installed=True)

    def reportinfo(self) -> tuple[Any, int, str]:
        # Where the component is defined (a skip reason is shown at it), else the rootdir.
        path, line = self.path, 0
        with contextlib.suppress(OSError, TypeError):
            cls = self.check.target.cls
            path, line = Path(inspect.getsourcefile(cls) or path), inspect.getsourcelines(cls)[1] - 1
        return path, line, f"vframework check {self.check.id}"


# -- `class TestX(ConformanceTests)`: the author's own test class ----------------------------


class ConformanceTests:
    """Subclass in a test file, naming the component class to check (installed or not)::

        class TestLottery(ConformanceTests):
            component = LotteryScheduler

    pytest then runs ``test_property`` once per property of the component's kind, with the
    property's name as the test id (``TestLottery::test_property[dispatch]``). The command
    line's ``--vframework-profile``, ``--vframework-arch`` and ``--vframework-shrink-seconds``
    override the class's ``profile``, ``arch`` and ``shrink_seconds``.
    """

    #: The component class: a subclass of Scheduler, Mode, MemoryPolicy, MemoryService, Device
    #: or Workload. Its ``known_limitations`` are reported as xfails.
    component: ClassVar[type[Any] | None] = None
    #: The Hypothesis profile: ``default``, ``ci`` or ``thorough`` (None: ``default``).
    profile: ClassVar[str | None] = None
    #: For a mode, the architecture to check it on (None: the first the mode declares).
    arch: ClassVar[str | None] = None
    #: Seconds Hypothesis may spend shrinking a property's failures (None: the kit's default).
    shrink_seconds: ClassVar[float | None] = None

    def test_property(self, vframework_check: Check, request: pytest.FixtureRequest) -> None:
        test_file = request.node.nodeid.split("::")[0]
        rerun = f"pytest {shlex.quote(test_file)}"
        run_conformance_check(vframework_check, _run_settings(request.config, type(self)), rerun)


def _class_target(tests: type[ConformanceTests]) -> Target:
    from vframework.api.contract import KINDS
    from vframework.testing.kit import Target

    component = tests.component
    kind = getattr(component, "kind", None)
    if not isinstance(component, type) or kind not in KINDS:
        raise pytest.Collector.CollectError(
            f"{tests.__name__}.component must be a vframework component class (a subclass of one of the "
            f"kinds' base classes: {', '.join(KINDS)}), not {component!r}"
        )
    return Target(getattr(component, "name", "") or component.__name__, kind, component)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    tests = metafunc.cls
    if tests is None or not issubclass(tests, ConformanceTests) or PARAMETER not in metafunc.fixturenames:
        return
    from vframework.testing.kit import plan

    settings = _run_settings(metafunc.config, tests)
    checks = plan([_class_target(tests)], settings.arch)
    metafunc.parametrize(PARAMETER, [pytest.param(c, id=c.label, marks=_marks(c, settings)) for c in checks])
