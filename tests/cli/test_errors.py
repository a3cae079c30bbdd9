"""Bad input on the command line: one clear message, the right exit code, no traceback, no results.

Exit codes (see ``vframework.cli``): 2 for bad input (scenario, arguments, plugins that cannot
load), 1 for a failure while running. Every scenario problem names the file and the key path
(``vm[1].memory``); ``vframework validate`` lists every problem of a file at once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from vf_helpers import flat, results_left_behind

VALID = """\
name = "small"
seed = 3
duration = "50ms"
sample_interval = "10ms"

[host]
cpus = 2
memory = "1GiB"
scheduler = { name = "fair", tslice = "5ms" }
memory_policy = "static"

[[vm]]
name = "a"
vcpus = 1
memory = "128MiB"
workload = "cpu"

[[vm]]
name = "b"
vcpus = 1
memory = "128MiB"
workload = "idle"
"""


def edit(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


#: id -> (scenario text, [(key path, words the message must contain)])
BAD_SCENARIOS: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "unknown-scheduler": (
        edit('scheduler = { name = "fair", tslice = "5ms" }', 'scheduler = "no-such-scheduler"'),
        [("host.scheduler", ["unknown scheduler", "no-such-scheduler", "installed", "fair"])],
    ),
    "unknown-memory-policy": (
        edit('memory_policy = "static"', 'memory_policy = "no-such-policy"'),
        [("host.memory_policy", ["no-such-policy", "installed", "static"])],
    ),
    "unknown-workload": (
        edit('workload = "idle"', 'workload = "no-such-workload"'),
        [("vm[1].workload", ["unknown workload", "no-such-workload", "installed", "cpu", "idle", "io", "memory"])],
    ),
    "unknown-mode": (
        edit('workload = "cpu"', 'workload = "cpu"\nmode = "no-such-mode"'),
        [("vm[0].mode", ["unknown mode", "no-such-mode", "installed", "bare-metal"])],
    ),
    "unknown-memory-service": (
        edit('memory_policy = "static"', 'memory_policy = "static"\nmemory_services = ["no-such-service"]'),
        [("host.memory_services[0]", ["no-such-service", "installed"])],
    ),
    "memory-service-listed-twice": (
        edit('memory_policy = "static"', 'memory_policy = "static"\nmemory_services = ["balloon", "balloon"]'),
        [("host.memory_services[1]", ["'balloon'", "listed twice", "[0]"])],
    ),
    "missing-vm-name": (
        edit('name = "b"\n', ""),
        [("vm[1].name", ["required"])],
    ),
    "missing-scenario-name": (
        edit('name = "small"\n', ""),
        [("name", ["required"])],
    ),
    "no-vm": (
        VALID.split("[[vm]]", maxsplit=1)[0],
        [("vm", ["[[vm]]"])],
    ),
    "empty-vm-list": (
        VALID.split("[host]", maxsplit=1)[0]
        + "vm = []\n\n[host]"
        + VALID.split("[host]")[1].split("[[vm]]", maxsplit=1)[0],
        [("vm", ["[[vm]]"])],
    ),
    "cpus-wrong-type": (
        edit("cpus = 2", 'cpus = "two"'),
        [("host.cpus", ["integer", "two"])],
    ),
    "vcpus-wrong-type": (
        edit("vcpus = 1", 'vcpus = "two"'),
        [("vm[0].vcpus", ["integer", "two"])],
    ),
    "cpus-zero": (
        edit("cpus = 2", "cpus = 0"),
        [("host.cpus", ["greater than 0"])],
    ),
    "vcpus-negative": (
        edit("vcpus = 1", "vcpus = -1"),
        [("vm[0].vcpus", ["greater than 0"])],
    ),
    "vm-memory-zero": (
        edit('memory = "128MiB"\nworkload = "idle"', 'memory = "0GiB"\nworkload = "idle"'),
        [("vm[1].memory", ["positive", "0GiB"])],
    ),
    "vm-memory-negative": (
        edit('memory = "128MiB"', 'memory = "-1GiB"'),
        [("vm[0].memory", ["positive", "-1GiB"])],
    ),
    "host-memory-zero": (
        edit('memory = "1GiB"', 'memory = "0B"'),
        [("host.memory", ["positive"])],
    ),
    "memory-unknown-unit": (
        edit('memory = "128MiB"', 'memory = "128 parsecs"'),
        [("vm[0].memory", ["unit", "parsecs"])],
    ),
    "memory-wrong-type": (
        edit('memory = "128MiB"', "memory = true"),
        [("vm[0].memory", ["size"])],
    ),
    "duration-negative": (
        edit('duration = "50ms"', 'duration = "-1s"'),
        [("duration", ["positive", "-1s"])],
    ),
    "duration-zero": (
        edit('duration = "50ms"', 'duration = "0s"'),
        [("duration", ["positive"])],
    ),
    "sample-interval-zero": (
        edit('sample_interval = "10ms"', 'sample_interval = "0ms"'),
        [("sample_interval", ["positive"])],
    ),
    "duration-bad-unit": (
        edit('duration = "50ms"', 'duration = "50 fortnights"'),
        [("duration", ["unit", "fortnights"])],
    ),
    "seed-negative": (
        edit("seed = 3", "seed = -3"),
        [("seed", ["greater than or equal to 0"])],
    ),
    "vm-larger-than-host": (
        edit('memory = "128MiB"', 'memory = "2GiB"'),
        [("vm", ["2176MiB", "1GiB", "static", "overcommit", "policies that can", "shares"])],
    ),
    "vms-together-larger-than-host": (
        edit('memory = "1GiB"', 'memory = "200MiB"'),
        [("vm", ["256MiB", "200MiB", "overcommit"])],
    ),
    "unknown-vm-key": (
        edit('workload = "cpu"', 'workload = "cpu"\nfrobnicate = 3'),
        [("vm[0].frobnicate", ["unknown key"])],
    ),
    "unknown-host-key": (
        edit("cpus = 2", "cpus = 2\nfrobnicate = 3"),
        [("host.frobnicate", ["unknown key"])],
    ),
    "unknown-top-level-key": (
        edit("seed = 3", "seed = 3\nfrobnicate = 3"),
        [("frobnicate", ["unknown key"])],
    ),
    "duplicate-vm-name": (
        edit('name = "b"', 'name = "a"'),
        [("vm[1].name", ["duplicate", "'a'"])],
    ),
    "bad-vm-name": (
        edit('name = "b"', 'name = "b c/d"'),
        [("vm[1].name", ["pattern"])],
    ),
    "component-param-invalid": (
        edit('workload = "cpu"', 'workload = { name = "cpu", burst = "0ms" }'),
        [("vm[0].workload.burst", ["positive"])],
    ),
    "component-param-unknown": (
        edit('workload = "cpu"', 'workload = { name = "cpu", frobnicate = 1 }'),
        [("vm[0].workload.frobnicate", ["unknown key"])],
    ),
    "scheduler-param-invalid": (
        edit('tslice = "5ms"', 'tslice = "-5ms"'),
        [("host.scheduler.tslice", ["positive", "-5ms"])],
    ),
    "component-table-without-name": (
        edit('workload = "cpu"', 'workload = { burst = "1ms" }'),
        [("vm[0].workload", ["name"])],
    ),
    "working-set-larger-than-vm": (
        edit('workload = "cpu"', 'workload = { name = "memory", working_set = "256MiB" }'),
        [("vm[0].workload.working_set", ["256MiB", "128MiB"])],
    ),
    "irq-affinity-unknown": (
        edit("cpus = 2", 'cpus = 2\nirq_affinity = "cpu7"'),
        [("host.irq_affinity", ["round-robin", "cpu0"])],
    ),
    "arch-unknown": (
        edit("cpus = 2", 'cpus = 2\narch = "arm64"'),
        [("host.arch", ["x86", "arm64"])],
    ),
    "host-os-load-too-high": (
        edit("cpus = 2", "cpus = 2\nhost_os_load = 2.0"),
        [("host.host_os_load", ["0.9"])],
    ),
    "cost-unknown": (
        edit("cpus = 2", "cpus = 2\ncosts = { teleport = 1 }"),
        [("host.costs", ["teleport", "trap"])],
    ),
    "cost-profile-unknown": (
        edit("cpus = 2", 'cpus = 2\ncosts = "pentium5"'),
        [("host.costs", ["unknown cost profile 'pentium5'", "pentium4-2006"])],
    ),
    "cost-negative": (
        edit("cpus = 2", "cpus = 2\ncosts = { trap = -5 }"),
        [("host.costs", ["host.costs.trap", ">= 0"])],
    ),
    "host-wrong-type": (
        VALID.split("[host]", maxsplit=1)[0] + "host = 3\n\n[[vm]]" + VALID.split("[[vm]]", 1)[1],
        [("host", ["dictionary"])],
    ),
}


def count_problems(output: str, source: str) -> int:
    return sum(1 for line in output.splitlines() if line.strip().startswith(f"{source}: "))


def problem_lines(output: str, source: str) -> dict[str, str]:
    """``key path -> message`` of every problem line (``  FILE: PATH: MESSAGE``) in the output."""
    found: dict[str, str] = {}
    for line in map(str.strip, output.splitlines()):
        if line.startswith(f"{source}: "):
            rest = line[len(source) + 2 :]
            path, sep, message = rest.partition(": ")
            found.setdefault(path if sep else "", message if sep else rest)
    return found


def assert_problems(output: str, source: str, expected: list[tuple[str, list[str]]]) -> None:
    problems = problem_lines(output, source)
    for path, words in expected:
        assert path in problems, f"no problem reported at {path!r}; got {problems}\n{output}"
        for word in words:
            assert word.lower() in problems[path].lower(), f"{path}: {problems[path]!r} lacks {word!r}"


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_run_rejects_bad_scenario(case: str, cli, write_scenario, tmp_path: Path) -> None:
    text, expected = BAD_SCENARIOS[case]
    path = write_scenario(text, f"{case}.toml")
    out = tmp_path / "results" / "out"
    output = cli(["run", path, "--out", out, "-q", "--no-plot"], code=2)
    assert "invalid scenario" in output
    assert_problems(output, str(path), expected)
    assert not out.exists()
    assert results_left_behind(out) == []


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_validate_rejects_bad_scenario(case: str, cli, write_scenario) -> None:
    text, expected = BAD_SCENARIOS[case]
    path = write_scenario(text, f"{case}.toml")
    output = cli(["validate", path], code=2)
    assert_problems(output, str(path), expected)
    assert set(problem_lines(output, str(path))) == {p for p, _ in expected}, "spurious problems reported"
    header = re.search(r"invalid scenario \((\d+) problems?\)", output)
    assert header, output
    assert int(header.group(1)) == count_problems(output, str(path))


def test_validate_accepts_valid_scenario(cli, write_scenario) -> None:
    path = write_scenario(VALID)
    output = flat(cli(["validate", path]))  # rich wraps long lines
    assert "valid scenario 'small' (2 VMs)" in output


def test_validate_lists_every_problem_in_one_pass(cli, write_scenario) -> None:
    """Shape errors, unknown component names and unknown VM keys all come out together."""
    text = """\
        name = "many"
        duration = "-1s"

        [host]
        cpus = "two"
        scheduler = "no-such-scheduler"

        [[vm]]
        name = "a"
        memory = "0GiB"
        workload = "no-such-workload"
        frobnicate = 3

        [[vm]]
        memory = "1GiB"
        mode = "no-such-mode"
        """
    path = write_scenario(text)
    output = cli(["validate", path], code=2)
    expected = [
        ("duration", ["positive"]),
        ("host.cpus", ["integer"]),
        ("host.scheduler", ["no-such-scheduler", "installed"]),
        ("vm[0].memory", ["positive"]),
        ("vm[0].workload", ["no-such-workload", "installed"]),
        ("vm[0].frobnicate", ["unknown key"]),
        ("vm[1].name", ["required"]),
        ("vm[1].mode", ["no-such-mode", "installed"]),
    ]
    assert_problems(output, str(path), expected)
    assert f"({count_problems(output, str(path))} problems)" in output


def test_validate_reports_component_parameters_alongside_shape_errors(cli, write_scenario) -> None:
    text = """\
        name = "params"
        duration = "-1s"

        [[vm]]
        name = "a"
        workload = { name = "cpu", burst = "0ms" }
        """
    path = write_scenario(text)
    output = cli(["validate", path], code=2)
    assert_problems(output, str(path), [("duration", ["positive"]), ("vm[0].workload.burst", ["positive"])])


# -- files that cannot be read ------------------------------------------------------------


def test_malformed_toml(cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario('name = "x"\n\n[host\ncpus = 2\n')
    out = tmp_path / "out"
    for args in (["run", path, "--out", out, "-q", "--no-plot"], ["validate", path]):
        output = cli(args, code=2)
        assert str(path) in output
        assert "TOML" in output
        assert "line 3" in output
    assert not out.exists()
    assert results_left_behind(out) == []


def test_missing_file(cli, tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.toml"
    out = tmp_path / "out"
    for args in (["run", path, "--out", out, "-q", "--no-plot"], ["validate", path]):
        output = cli(args, code=2)
        assert str(path) in output
        assert "cannot read" in output
        assert "No such file" in output
    assert not out.exists()


def test_file_that_is_not_text(cli, tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b'name = "\xff\xfe"\n\x00\x81')
    output = cli(["validate", path], code=2)
    assert str(path) in output
    assert "cannot read" in output


def test_directory_instead_of_file(cli, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.toml"
    folder.mkdir()
    out = tmp_path / "out"
    output = cli(["run", folder, "--out", out, "-q", "--no-plot"], code=2)
    assert "a-folder.toml" in output
    assert "directory" in output
    assert not out.exists()


# -- --set ----------------------------------------------------------------------------------

SET_ERRORS = {
    "unknown-key": (["--set", "host.frobnicate=1"], ["host.frobnicate", "unknown key"]),
    "unknown-top-level-key": (["--set", "frobnicate=1"], ["frobnicate", "unknown key"]),
    "no-equals": (["--set", "hostcpus"], ["hostcpus", "KEY=VALUE"]),
    "empty-key": (["--set", "=4"], ["KEY=VALUE"]),
    "index-out-of-range": (["--set", "vm[9].memory=1GiB"], ["vm[9].memory", "no index 9"]),
    "bad-index": (["--set", "vm[x].memory=1GiB"], ["vm[x]"]),
    "empty-part": (["--set", "host..cpus=4"], ["host..cpus"]),
    "index-on-a-table": (["--set", "host[0].cpus=4"], ["host[0].cpus"]),
    "through-a-value": (["--set", "host.cpus.count=4"], ["host.cpus.count", "not a table"]),
    "wrong-type": (["--set", "host.cpus=two"], ["host.cpus", "two"]),
    "negative-duration": (["--set", "duration=-1s"], ["duration", "positive"]),
    "zero-memory": (["--set", "vm[0].memory=0GiB"], ["vm[0].memory", "positive"]),
    "overcommit-under-static": (["--set", "host.memory_policy=static"], ["vm:", "static", "overcommit"]),
    "preallocated-overcommit": (
        ["--set", "vm[1].mode=bare-metal", "--set", "vm[1].memory=1GiB"],
        ["db", "bare-metal", "preallocate"],
    ),
    "unknown-component": (["--set", "host.scheduler=no-such"], ["host.scheduler", "no-such", "installed"]),
}


@pytest.mark.parametrize("case", sorted(SET_ERRORS))
def test_bad_set_on_default_scenario(case: str, cli, tmp_path: Path) -> None:
    args, words = SET_ERRORS[case]
    out = tmp_path / "out"
    output = cli(["run", *args, "--out", out, "-q", "--no-plot"], code=2)
    for word in words:
        assert word in output, f"{word!r} not in {output!r}"
    assert not out.exists()
    assert results_left_behind(out) == []


def test_bad_set_on_a_file_names_the_set(cli, write_scenario, tmp_path: Path) -> None:
    """A problem with a value given by --set is reported against that --set, not the file."""
    path = write_scenario(VALID)
    out = tmp_path / "out"
    output = cli(["run", path, "--set", "vm[1].memory=0GiB", "--out", out, "-q", "--no-plot"], code=2)
    assert_problems(output, "--set vm[1].memory=0GiB", [("vm[1].memory", ["positive"])])
    assert str(path) not in output
    output = cli(["validate", path, "--set", "host.frobnicate=1"], code=2)
    assert_problems(output, "--set host.frobnicate=1", [("host.frobnicate", ["unknown key"])])
    assert not out.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ["host.memory_services[0].period=1s"],
        ["vm[0]=1", "vm[0].memory=1GiB"],
    ],
    ids=["service-given-by-name", "vm-replaced-by-a-number"],
)
def test_set_through_a_list_element_that_is_not_a_table(
    overrides: list[str], cli, write_scenario, tmp_path: Path
) -> None:
    path = write_scenario(edit('memory_policy = "static"', 'memory_policy = "static"\nmemory_services = ["x"]'))
    args = [a for o in overrides for a in ("--set", o)]
    out = tmp_path / "out"
    output = cli(["run", path, *args, "--out", out, "-q", "--no-plot"], code=2)
    assert overrides[-1].split("=")[0] in output
    assert not out.exists()


def test_negative_seed_option(cli, tmp_path: Path) -> None:
    output = cli(["run", "--seed", "-1", "--out", tmp_path / "out", "-q", "--no-plot"], code=2)
    assert "--seed" in output
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(cli, tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("not a folder", encoding="utf-8")
    output = cli(["run", "--set", "duration=10ms", "--out", out, "-q", "--no-plot"], code=2)
    assert "a-file" in output
    assert out.read_text(encoding="utf-8") == "not a folder"


def test_unknown_option(cli, tmp_path: Path) -> None:
    output = cli(["run", "--frobnicate", "--out", tmp_path / "out"], code=2)
    assert "--frobnicate" in output


# -- checks the scenario cannot catch -----------------------------------------------------


def test_host_memory_smaller_than_a_page(cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario("""\
        name = "tiny"
        duration = "10ms"

        [host]
        memory = "100B"

        [[vm]]
        name = "a"
        memory = "50B"
        """)
    out = tmp_path / "out"
    output = cli(["run", path, "--out", out, "-q", "--no-plot"], code=2)
    assert_problems(output, str(path), [("host.memory", [])])
    assert not out.exists()


WORKING_SETS_TOO_BIG = """\
name = "too-big"
duration = "200ms"

[host]
cpus = 2
memory = "1GiB"

[[vm]]
name = "a"
vcpus = 2
memory = "16MiB"
workload = { name = "memory", working_set = "12MiB", pattern = "sequential" }
"""


def test_guest_out_of_memory_is_a_runtime_failure(cli, write_scenario, tmp_path: Path) -> None:
    """Each vCPU runs its own process with its own working set: 2 x 12 MiB do not fit in 16 MiB.
    Whether validation or the run catches it, the answer is a message, not a traceback or results."""
    path = write_scenario(WORKING_SETS_TOO_BIG)
    out = tmp_path / "out"
    result = cli.invoke(["run", path, "--out", out, "-q", "--no-plot"])
    assert result.exit_code in (1, 2), result.output
    output = result.output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "'a'" in output or "vm[0]" in output
    assert not out.exists()
    assert results_left_behind(out) == []


def test_validate_counts_one_working_set_per_vcpu(cli, write_scenario) -> None:
    path = write_scenario(WORKING_SETS_TOO_BIG)
    output = cli(["validate", path], code=2)
    assert "vm[0].workload.working_set" in output


# -- the real process ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{missing}", "-q", "--no-plot"],
        ["run", "{malformed}", "-q", "--no-plot"],
        ["run", "--set", "host.frobnicate=1", "-q", "--no-plot"],
        ["run", "--set", "hostcpus", "-q", "--no-plot"],
        ["validate", "{bad}"],
    ],
    ids=["missing-file", "malformed-toml", "unknown-set-key", "bad-set-syntax", "validate-bad-file"],
)
def test_real_process_prints_message_not_traceback(args: list[str], write_scenario, tmp_path: Path) -> None:
    files = {
        "missing": str(tmp_path / "missing.toml"),
        "malformed": str(write_scenario("name = [\n", "malformed.toml")),
        "bad": str(write_scenario(BAD_SCENARIOS["cpus-wrong-type"][0], "bad.toml")),
    }
    argv = [a.format(**files) for a in args]
    out = tmp_path / "out"
    if argv[0] == "run":
        argv += ["--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "vframework", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("error:"), proc.stderr
    assert not out.exists()
    assert not (tmp_path / "vframework-results").exists()
