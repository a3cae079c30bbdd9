"""Replay files: one failure of one property, written by ``vframework check`` so that
``vframework check --replay FILE`` reruns exactly that example (no search, no shrinking).

A replay file is JSON: the component, its kind, the property (with the architecture for
modes), the Hypothesis version and its encoding of the example, and, for the reader, the error
and the steps. The example encoding is only valid for the Hypothesis version that wrote it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import hypothesis

from vframework.errors import ReplayError
from vframework.testing.kit import Check, Outcome

__all__ = ["Replay", "ReplayError", "load_replay", "save_replays"]

_FORMAT = "vframework-check-replay/1"


@dataclass(frozen=True)
class Replay:
    component: str
    kind: str
    #: The check's label: the property's name, with ``[arch]`` for modes.
    property: str
    arch: str | None
    hypothesis: str
    example: str
    error: str
    steps: list[str]
    #: The profile that found the failure: its step count bounds how much of the example
    #: replays, so a replay runs under it (files without it replay under the one asked for).
    profile: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def save_replays(outcome: Outcome, check: Check, folder: Path, profile: str | None = None) -> list[Path]:
    """Write one replay file per failure of ``outcome`` (those Hypothesis gave an encoding for),
    found under ``profile``."""
    arch = check.label.rsplit("[", 1)[1].rstrip("]") if check.target.kind == "mode" else None
    paths = []
    for i, failure in enumerate(outcome.failures, 1):
        if failure.blob is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        suffix = f"-{i}" if len(outcome.failures) > 1 else ""
        path = folder / f"{_slug(check.target.name)}--{_slug(check.label)}{suffix}.json"
        replay = Replay(
            check.target.name,
            check.target.kind,
            check.label,
            arch,
            hypothesis.__version__,
            failure.blob,
            failure.error,
            failure.steps,
            profile,
        )
        path.write_text(json.dumps({"format": _FORMAT, **asdict(replay)}, indent=2) + "\n")
        paths.append(path)
    return paths


def load_replay(path: Path) -> Replay:
    """Read a replay file; :class:`ReplayError` names what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{path}: not a replay file (invalid JSON at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ReplayError(f"{path}: not a replay file written by `vframework check` (format {_FORMAT})")
    data.pop("format")
    try:
        replay = Replay(**data)
    except TypeError as exc:
        raise ReplayError(f"{path}: malformed replay file ({exc})") from None
    if replay.hypothesis != hypothesis.__version__:
        raise ReplayError(
            f"{path}: written with Hypothesis {replay.hypothesis}, this is {hypothesis.__version__}; "
            "an example's encoding only replays on the version that wrote it (run the check again)"
        )
    return replay
