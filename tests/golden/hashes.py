"""Result hashes: the contract that a refactoring changes no result.

``python tests/golden/hashes.py record`` runs every golden case and writes ``hashes.json``;
``python tests/golden/hashes.py check`` (and ``tests/run/test_golden.py``) reruns them and
compares (with ``VF_GOLDEN_KEEP=DIR``, each case's results stay in ``DIR/<case>``). A case is
the default scenario, each scenario in ``scenarios/``, or an experiment (``--quick`` or full).
Each file is hashed twice: its raw bytes, and its *result* (summary.json without the ``plugins``
list of installed distributions and their versions, which is provenance, and without the host's
``events_fired``, which counts the simulator's own work, not the model's: running operations
ahead fires fewer events for the same results). provenance.json (the time, the versions, the
platform) is not hashed. The result hash is the one that must never drift.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
HASHES = HERE / "hashes.json"
EXPERIMENTS = (
    "cpu-shares",
    "mmu",
    "modes",
    "esx-sharing",
    "esx-idle-tax",
    "esx-sampling",
    "esx-balloon",
    "io",
    "aa06",
    "xen03",
)


def cases(full: bool = True) -> dict[str, list[str]]:
    """Case name -> ``vframework`` arguments (without ``--out``)."""
    found = {"run/default": ["run", "-q", "--no-plot"]}
    for path in sorted(SCENARIOS.glob("*.toml")):
        found[f"run/{path.stem}"] = ["run", str(path), "-q", "--no-plot"]
    for name in EXPERIMENTS:
        found[f"experiment-quick/{name}"] = ["experiment", name, "--quick"]
        if full:
            found[f"experiment/{name}"] = ["experiment", name]
    return found


def result_bytes(path: Path) -> bytes:
    """A file's result content: summary.json without the plugin distributions list."""
    data = path.read_bytes()
    if path.name == "summary.json":
        doc = json.loads(data)
        doc.pop("plugins", None)
        doc.get("host", {}).pop("events_fired", None)
        data = json.dumps(doc, indent=2, sort_keys=True).encode()
    return data


def run_case(args: list[str], out: Path) -> dict[str, dict[str, str]]:
    """Run one case into ``out``; sha256 of every CSV and JSON file it wrote."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "vframework", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"vframework {' '.join(args)} failed:\n{proc.stderr}")
    return {
        p.name: {
            "raw": hashlib.sha256(p.read_bytes()).hexdigest(),
            "result": hashlib.sha256(result_bytes(p)).hexdigest(),
        }
        for p in sorted(out.iterdir())
        # provenance.json records the time, the versions and the platform: provenance, not result.
        if p.suffix in (".csv", ".json") and p.name != "provenance.json"
    }


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "check"
    only = argv[1:]
    wanted = {k: v for k, v in cases().items() if not only or any(k.startswith(o) for o in only)}
    recorded = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    bad = 0
    keep = os.environ.get("VF_GOLDEN_KEEP")  # a folder to keep each case's results in (by case name)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, args) in enumerate(wanted.items()):
            got = run_case(args, Path(keep) / name if keep else Path(tmp) / str(i))
            if what == "record":
                recorded[name] = got
                print(f"recorded {name}")
                continue
            want = recorded.get(name)
            same = want is not None and {f: h["result"] for f, h in want.items()} == {
                f: h["result"] for f, h in got.items()
            }
            bad += not same
            print(f"{'same' if same else 'DIFFERS'} {name}")
    if what == "record":
        HASHES.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
