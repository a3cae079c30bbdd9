"""Detection rates: how often the conformance kit catches each mutant of tests/mutants.py in one
run of the property the mutant names, over fresh random seeds at a profile's examples and steps.

    python tests/detection.py [--seeds 20] [--profile default] [NAME...]

Prints a Markdown table (docs/testing.md records it). Shrinking is left out: catching is the
point, and the minimal examples are tested elsewhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hypothesis import Phase, settings

sys.path.insert(0, str(Path(__file__).parent))

from mutants import MUTANTS

from vframework.testing.kit import Target, plan
from vframework.testing.profiles import settings_for
from vframework.testing.runner import run_property


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--profile", default="default")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    fresh = settings(settings_for(args.profile), database=None, phases=[Phase.generate])
    print(f"| mutant | bug | property | caught (of {args.seeds}) | s per run |")
    print("| --- | --- | --- | --- | --- |")
    for m in MUTANTS:
        if args.names and m.cls.name not in args.names:
            continue
        [check] = [c for c in plan([Target(m.cls.name, m.cls.kind, m.cls)]) if c.prop and c.prop.name == m.prop]
        assert check.machine is not None, check.skip
        assert check.prop is not None
        caught, start = 0, time.perf_counter()
        for _ in range(args.seeds):
            caught += not run_property(check.machine, hypothesis_settings=fresh, examples=check.prop.examples).passed
        each = (time.perf_counter() - start) / args.seeds
        print(f"| `{m.cls.name}` | {m.bug} | {m.prop} | {caught} | {each:.1f} |", flush=True)


if __name__ == "__main__":
    main()
