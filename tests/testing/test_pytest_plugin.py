"""The conformance kit as a pytest plugin, as a plugin author uses it in their own repository:
a ``ConformanceTests`` subclass in a conftest-free test file, and ``--vframework-component`` on an
installed component. Each run is a pytest run of its own (``pytester``, in-process), on the ``ci``
profile with a small shrink budget and a fixed seed, so that a planted bug is caught in every run.

Property names come from the kit's registry at run time (they are not spelled out here)."""

from __future__ import annotations

import re
import textwrap

import pytest
from hypothesis import settings
from vf_helpers import DOCS

from vframework.testing import profiles
from vframework.testing.doubles import FifoScheduler
from vframework.testing.kit import PROPERTIES, Check, Target, plan
from vframework.testing.pytest_plugin import PROFILE_NAMES

pytest_plugins = ["pytester"]

#: The options every run below gets: quick, and no cache folder in the test's directory.
QUICK = ("--vframework-profile", "ci", "--vframework-shrink-seconds", "2", "-p", "no:cacheprovider")

#: A correct scheduler: the kit's FIFO double with 1 ms slices (its 1 µs slices make the
#: properties that run simulated seconds slow).
TIDY = """\
from vframework.testing.doubles import FifoScheduler


class TidyFifo(FifoScheduler):
    name = "tidy-fifo"
    slice_ns = 1_000_000
"""

#: The bug of the conformance tests of ``vframework check``: ``pick`` returns the head of the
#: queue without taking it off, so the next CPU is handed a vCPU that is already running.
DOUBLE_PICK = """\
from vframework.testing.doubles import FifoScheduler


class DoublePick(FifoScheduler):
    name = "double-pick"
    slice_ns = 1_000_000
    known_limitations = {limitations}

    def pick(self, cpu, now):
        return (self.queue[0], self.slice_ns) if self.queue else (None, 0)
"""


def _test_file(source: str, cls: str) -> str:
    """A conftest-free test file: the component, and a ConformanceTests subclass naming it."""
    tests = f"class Test{cls}(ConformanceTests):\n    component = {cls}\n"
    return f"{source}\n\nfrom vframework.testing.pytest_plugin import ConformanceTests\n\n\n{tests}"


def _fifo_checks() -> list[Check]:
    """The kit's plan for a FIFO scheduler (the schedulers above differ from it only in name)."""
    return plan([Target("fifo", "scheduler", FifoScheduler)])


def _scheduler_properties() -> list[str]:
    return [p.name for p in PROPERTIES if p.kind == "scheduler"]


def _line(test_id: str, outcome: str) -> str:
    """A regex for the ``-v`` line of a test id with its outcome."""
    return rf".*{re.escape(test_id)} {outcome}\b.*"


@pytest.fixture(autouse=True)
def _fixed_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``ci`` profile on a fixed seed: a planted bug is found in every run or in none
    (the runs are in-process, so they see this)."""
    monkeypatch.setitem(profiles.PROFILES, "ci", settings(profiles.PROFILES["ci"], derandomize=True))


def test_the_profile_option_offers_the_kits_profiles() -> None:
    assert set(PROFILE_NAMES) == set(profiles.PROFILES)


# -- ConformanceTests ------------------------------------------------------------------------


def test_a_correct_component_passes_and_inapplicable_properties_are_skipped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tidy=_test_file(TIDY, "TidyFifo"))
    result = pytester.runpytest(*QUICK, "-v", "-rs")
    checks = _fifo_checks()
    skipped = [c for c in checks if c.machine is None]
    assert len(checks) == len(_scheduler_properties())
    result.assert_outcomes(passed=len(checks) - len(skipped), skipped=len(skipped))
    for check in checks:
        outcome = "SKIPPED" if check.machine is None else "PASSED"
        result.stdout.re_match_lines([_line(f"TestTidyFifo::test_property[{check.label}]", outcome)])
    for check in skipped:
        assert f"not applicable: {check.skip}" in result.stdout.str()


def test_a_buggy_component_fails_with_the_kits_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_double_pick=_test_file(DOUBLE_PICK.format(limitations="{}"), "DoublePick"))
    result = pytester.runpytest(*QUICK, "-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    failed = re.findall(r"TestDoublePick::test_property\[(.+?)\] FAILED", output)
    assert failed, output
    assert set(failed) <= set(_scheduler_properties())
    # The kit's report, not a traceback through the plugin: the property, the minimal steps,
    # the error, where it was raised and the token that replays it.
    assert re.search(rf"double-pick \(scheduler\) fails '{re.escape(failed[0])}': \d+ distinct failures? in", output)
    assert "minimal steps:\n  state.add_vm(" in output
    assert "is running on CPU" in output
    assert "raised at " in output
    # Under the profile that found it (ci here): a shorter one could cut the example short.
    check = re.escape(failed[0])
    rerun = rf"  pytest test_double_pick.py --vframework-profile ci --vframework-replay '?double-pick::{check}="
    assert re.search(rf"to rerun exactly this example \(replay token \S+\):\n{rerun}", output)
    assert "run_conformance_check" not in output


def test_a_failure_replays_from_its_token(pytester: pytest.Pytester) -> None:
    """The failure shows the option that reruns exactly its example: it fails again, alone; once
    the bug is fixed, it passes."""
    pytester.makepyfile(test_double_pick=_test_file(DOUBLE_PICK.format(limitations="{}"), "DoublePick"))
    result = pytester.runpytest(*QUICK)
    replays = re.findall(r"--vframework-replay '?(double-pick::([^=]+)=[\w+/=]+)", result.stdout.str())
    assert replays, result.stdout.str()
    replay, label = replays[0]
    result = pytester.runpytest(*QUICK, "-v", "--vframework-replay", replay)
    result.assert_outcomes(failed=1, skipped=len(_scheduler_properties()) - 1)
    result.stdout.re_match_lines([_line(f"TestDoublePick::test_property[{label}]", "FAILED")])
    assert "is running on CPU" in result.stdout.str()
    fixed = DOUBLE_PICK.format(limitations="{}").split("    def pick")[0]
    pytester.makepyfile(test_double_pick=_test_file(fixed, "DoublePick"))
    result = pytester.runpytest(*QUICK, "--vframework-replay", replay)
    result.assert_outcomes(passed=1, skipped=len(_scheduler_properties()) - 1)


def test_a_malformed_replay_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUICK, "--vframework-replay", "AABBAEEB")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected COMPONENT::PROPERTY=TOKEN*"])


def test_a_declared_known_limitation_is_an_xfail(pytester: pytest.Pytester) -> None:
    limitations = {name: "pick leaves the vCPU queued" for name in _scheduler_properties()}
    pytester.makepyfile(test_double_pick=_test_file(DOUBLE_PICK.format(limitations=limitations), "DoublePick"))
    result = pytester.runpytest(*QUICK, "-v", "-rxXs")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes
    assert outcomes["xfailed"] >= 1
    result.stdout.re_match_lines([r".*XFAIL.*known limitation: pick leaves the vCPU queued"])
    # A property that does not apply is still skipped, not an xfail.
    for check in _fifo_checks():
        if check.machine is None:
            result.stdout.re_match_lines([_line(f"TestDoublePick::test_property[{check.label}]", "SKIPPED")])


def test_a_class_without_a_component_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_nothing="""\
        from vframework.testing.pytest_plugin import ConformanceTests

        class TestNothing(ConformanceTests):
            component = object
        """
    )
    result = pytester.runpytest(*QUICK)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*TestNothing.component must be a vframework component class*"])


# -- --vframework-component ------------------------------------------------------------------


INSTALLED = f"""\
{TIDY}

from vframework import hookimpl


@hookimpl
def register_schedulers():
    return [TidyFifo]
"""


def test_an_installed_component_gets_one_item_per_property(pytester: pytest.Pytester, make_dist) -> None:
    make_dist("acme-tidy", INSTALLED)
    pytester.makepyfile(test_own="def test_own():\n    pass\n")
    checks = _fifo_checks()
    result = pytester.runpytest(*QUICK, "--vframework-component", "tidy-fifo", "-v")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    skipped = sum(1 for c in checks if c.machine is None)
    # The author's own tests run beside the checks.
    result.assert_outcomes(passed=1 + len(checks) - skipped, skipped=skipped)
    result.stdout.fnmatch_lines(
        ["vframework conformance: tidy-fifo (ci profile)", f"*collected {1 + len(checks)} items"]
    )
    for check in checks:
        outcome = "SKIPPED" if check.machine is None else "PASSED"
        result.stdout.re_match_lines([_line(f"vframework::tidy-fifo::{check.label}", outcome)])


def test_installed_checks_are_selected_with_k_and_m(pytester: pytest.Pytester, make_dist) -> None:
    make_dist("acme-tidy", INSTALLED)
    pytester.makepyfile(test_own="def test_own():\n    pass\n")
    labels = [c.label for c in _fifo_checks()]
    # -k: one property, by a word of its name that no other property's name has.
    word = next(w for w in re.findall(r"\w+", labels[0]) if sum(w in label for label in labels) == 1)
    result = pytester.runpytest(*QUICK, "--vframework-component", "tidy-fifo", "--collect-only", "-q", "-k", word)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"vframework::tidy-fifo::{labels[0]}", f"1/{1 + len(labels)} tests collected*"])
    # -m vframework: the checks and not the author's own tests.
    result = pytester.runpytest(
        *QUICK, "--vframework-component", "tidy-fifo", "--collect-only", "-q", "-m", "vframework"
    )
    assert [line for line in result.stdout.lines if line.startswith("vframework::")] == [
        f"vframework::tidy-fifo::{label}" for label in labels
    ]
    assert "test_own" not in result.stdout.str().replace("test_own.py", "")


def test_an_unknown_component_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUICK, "--vframework-component", "no-such-thing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--vframework-component: no installed component called 'no-such-thing'; installed: kernel*"]
    )


# -- the plugin in every pytest run ------------------------------------------------------------


def test_the_plugin_adds_nothing_unless_asked(pytester: pytest.Pytester) -> None:
    """In a fresh interpreter: a run that asks for no check collects only its own tests and never
    imports the kit."""
    pytester.makepyfile(
        test_plain="""\
        import sys

        def test_plain():
            assert "vframework.testing.kit" not in sys.modules
            assert "vframework.testing.hypervisor" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*collected 1 item", "*test_plain PASSED*"])
    assert "vframework conformance" not in result.stdout.str()


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for option in (
        "--vframework-component",
        "--vframework-profile",
        "--vframework-arch",
        "--vframework-shrink-seconds",
    ):
        assert option in result.stdout.str()


# -- the tutorials' test files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "folder"),
    [
        ("scheduler", "lottery"),
        ("workload", "webserver"),
        ("memory-policy", "reserve"),
        ("memory-service", "zeroshare"),
        ("device", "ramdisk"),
    ],
)
def test_a_tutorials_pytest_file_passes(pytester: pytest.Pytester, page: str, folder: str) -> None:
    """Each tutorial's plugin module and its ConformanceTests file, exactly as written, with the
    plugin importable (as once installed)."""
    text = (DOCS / "tutorials" / f"{page}.md").read_text(encoding="utf-8")
    plugin = re.search(rf":caption: {folder}/(vf_\w+)\.py\n\n(.*?)```", text, re.S)
    test = re.search(rf"```python\n# {folder}/(tests/test_\w+)\.py\n(.*?ConformanceTests.*?)```", text, re.S)
    assert plugin, f"the {page} tutorial shows its plugin module"
    assert test, f"the {page} tutorial shows a ConformanceTests test file in {folder}/tests"
    pytester.makepyfile(**{plugin.group(1): plugin.group(2)})
    pytester.syspathinsert()
    (pytester.path / "tests").mkdir()
    (pytester.path / f"{test.group(1)}.py").write_text(textwrap.dedent(test.group(2)), encoding="utf-8")
    result = pytester.runpytest(*QUICK, "-v", "tests")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes
    assert outcomes["passed"] >= 1
