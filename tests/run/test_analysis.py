"""Results read back as DataFrames, Parquet beside the CSV, report.html and `compare`."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from vf_helpers import CLI, summary_of

from vframework import results
from vframework.errors import ResultsError
from vframework.run import html as report_html
from vframework.run.analysis import load
from vframework.run.simulation import TIMESERIES_METRICS


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "default"
    CLI()(["run", "--set", "duration=2s", "--out", out, "-q"])
    return out


def test_load_gives_dataframes_with_units(default_run: Path) -> None:
    r = results.load(default_run)
    assert isinstance(r.summary, pd.DataFrame)
    assert set(r.summary.index) == {"web", "db", "batch", "idle", "legacy"}
    for column in ("cpu_run_ns", "mem_granted_pages", "mem_balloon_pages", "io_bytes", "traps", "bill_total"):
        assert column in r.summary, column
    assert "mem_granted" not in r.summary
    assert r.host["free_frames"] >= 0
    assert r.host["pages_sharing_pages"] == summary_of(default_run)["host"]["pages_sharing"]
    assert {"time_ns", "vm", "cpu_run_ns", "mem_consumed_pages"} <= set(r.timeseries.columns)
    summary = summary_of(default_run)
    assert r.summary.loc["db", "cpu_run_ns"] == summary["vms"]["db"]["cpu_run_ns"]
    assert r.summary.loc["db", "bill_total"] == Decimal(summary["billing"]["vms"]["db"]["bill_total"])
    assert r.provenance is not None
    assert r.provenance["seed"] == summary["seed"]


def test_ledger_is_exact(default_run: Path) -> None:
    ledger = load(default_run).ledger
    assert ledger is not None
    assert all(type(q) is int for q in ledger["quantity"])
    assert all(isinstance(a, Decimal) for a in ledger["amount"])
    storage = ledger[(ledger.vm == "web") & (ledger.resource == "storage")]["quantity"].sum()
    # 64 GiB x 2 s in byte-ns: past 2**63, kept exact.
    assert storage == 64 * 2**30 * 2 * 10**9 > 2**63


def test_parquet_beside_csv_holds_the_same_table(default_run: Path) -> None:
    ts_csv = pd.read_csv(default_run / "timeseries.csv")
    ts_parquet = pd.read_parquet(default_run / "timeseries.parquet")
    pd.testing.assert_frame_equal(ts_csv, ts_parquet)
    ledger = pd.read_parquet(default_run / "ledger.parquet")
    with (default_run / "ledger.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(ledger) == len(rows)
    assert [int(q) for q in ledger["quantity"]] == [int(r["quantity"]) for r in rows]
    assert [Decimal(a) for a in ledger["amount"]] == [Decimal(r["amount"]) for r in rows]


def test_load_refuses_a_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"has no summary\.json"):
        load(tmp_path)


def test_report_is_self_contained(cli: Any, default_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(default_run, folder)
    (folder / "timeseries.png").unlink()
    cli(["report", folder])
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert (folder / "timeseries.png").exists(), "report regenerates the plots"
    assert 'src="http' not in page
    assert "src='http" not in page
    for title in ("CPU per VM", "Memory per VM by state", "Pages shared per VM", "Bill per VM", "Invoice"):
        assert title in page, title
    assert page.count("data:image/png;base64,") >= 6
    assert "Provenance" in page


def test_report_leaves_out_panels_without_data(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "cpu-only"
    sets = ["duration=200ms", "vm[0].workload=cpu", "vm[0].devices=[]", "vm[4].devices=[]", "host.memory=4GiB"]
    sets += ["host.memory_services=[]", "host.memory_policy=static", "vm[4].workload=cpu"]
    cli(["run", *(a for s in sets for a in ("--set", s)), "--out", out, "-q", "--no-plot"])
    cli(["report", out])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "CPU per VM" in page
    assert "Ballooned per VM" not in page
    assert "Sharing</h2>" not in page


def _synthetic_folder(folder: Path, vms: int) -> None:
    """A results folder of ``vms`` VMs, written directly (a 1,000-VM run is slow to simulate)."""
    folder.mkdir()
    counters = dict.fromkeys(TIMESERIES_METRICS, 0)
    summary = {
        "scenario": "many",
        "seed": 0,
        "sim_time_ns": 10**9,
        "components": {"vms": {f"vm{i}": {"mode": "m", "workload": "w", "devices": []} for i in range(vms)}},
        "host": {},
        "vms": {f"vm{i}": {**counters, "cpu_run_ns": i, "mem_granted": i + 1} for i in range(vms)},
    }
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    lines = [",".join(["time_ns", "vm", *TIMESERIES_METRICS])]
    for t in (0, 10**9):
        for i in range(vms):
            row = {**counters, "cpu_run_ns": t * i // 10**4, "mem_consumed": i}
            lines.append(",".join([str(t), f"vm{i}", *(str(row[m]) for m in TIMESERIES_METRICS)]))
    (folder / "timeseries.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_legends_stay_readable_with_a_thousand_vms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "many"
    _synthetic_folder(folder, 1000)
    labels: list[list[str]] = []
    real = report_html.png_base64

    def spy(draw: Any, height: float = 3.0) -> str:
        def wrapped(ax: Any) -> None:
            draw(ax)
            labels.append([t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else [])])

        return real(wrapped, height)

    monkeypatch.setattr(report_html, "png_base64", spy)
    page = report_html.render_report(load(folder))
    assert labels, "no plot was drawn"
    for legend in labels:
        assert len(legend) <= report_html.TOP + 2, legend
    assert any("others (992 VMs)" in t for legend in labels for t in legend)
    assert page.count("<tr>") >= 1000  # the tables list every VM


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed (apt install chromium)")
def test_report_loads_in_headless_chromium(cli: Any, default_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(default_run, folder)
    cli(["report", folder])
    page = (folder / "report.html").read_text(encoding="utf-8")
    # The checker runs once everything has loaded and writes its verdict into the DOM.
    probe = (
        "<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
        "document.body.setAttribute('data-images',imgs.length);"
        "document.body.setAttribute('data-broken',imgs.filter(i=>!(i.complete&&i.naturalWidth>0)).length);});"
        "</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe), encoding="utf-8")
    proc = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 'data-broken="0"' in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    images = int(proc.stdout.split('data-images="', 1)[1].split('"', 1)[0])
    assert images >= 6
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console


def test_compare_puts_runs_side_by_side(cli: Any, default_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "credit"
    cli(["run", "--set", "duration=2s", "--set", "host.scheduler=credit", "--out", other, "-q", "--no-plot"])
    data = json.loads(cli(["compare", default_run, other, "--format", "json"]))
    rows = {r["metric"]: r for r in data}
    assert {"cpu_run_ns", "bill_total", "host.hypervisor_ns"} <= set(rows)
    base, new = rows["cpu_ready_ns"][str(default_run)], rows["cpu_ready_ns"][str(other)]
    assert rows["cpu_ready_ns"]["ratio 1"] == pytest.approx(new / base)
    one = json.loads(cli(["compare", default_run, other, "-m", "db.cpu_run_ns", "--format", "json"]))
    assert one[0][str(default_run)] == summary_of(default_run)["vms"]["db"]["cpu_run_ns"]
    output = cli(["compare", default_run, other, "-m", "no_such_metric"], code=2)
    assert "'no_such_metric' is in none of the folders" in output
    table = cli(["compare", default_run, other])
    assert "ratio 1" in table
