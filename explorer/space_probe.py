"""Asks the `spaces` package, in a child process, what a search space may hold and whether a
space file is valid: `spaces` imports torch, which the web process never loads.

Run as `python -m explorer.space_probe describe` (every knob: type, choices or range, default,
why) or `... check FILE` ({"ok": true} or {"error": "..."}); the explorer reads the JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROBE_TIMEOUT_S = 120


def describe() -> list[dict[str, Any]]:
    """Every searchable knob of the Config, in field order."""
    from spaces.space import BUDGET_KNOBS, knob_fields

    knobs = []
    for path, f in knob_fields().items():
        if path in BUDGET_KNOBS:
            continue
        meta = f.metadata
        knobs.append({
            "path": path,
            "type": type(f.default).__name__,
            "default": f.default,
            "choices": list(meta["choices"]) if "choices" in meta else None,
            "range": list(meta["range"]) if "range" in meta else None,
            "why": meta.get("why") or "",
        })
    return knobs


def check(path: Path) -> dict[str, Any]:
    """{"ok": true, "knobs": n} when `spaces` accepts the file as a search space, else
    {"error": its one-line reason}."""
    from spaces.space import SearchSpace, SpaceError

    try:
        space = SearchSpace(str(path))
    except (SpaceError, FileNotFoundError, ValueError) as exc:
        return {"error": str(exc)}
    return {"ok": True, "knobs": len(space.knobs)}


def run_probe(*args: str) -> Any:
    """The JSON answer of the probe run with `args`, from the web process."""
    done = subprocess.run(
        [sys.executable, "-m", "explorer.space_probe", *args], cwd=REPO, capture_output=True,
        text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"space probe exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv[:1] == ["describe"]:
        print(json.dumps(describe()))
        return 0
    if len(argv) == 2 and argv[0] == "check":
        print(json.dumps(check(Path(argv[1]))))
        return 0
    print("usage: python -m explorer.space_probe describe | check FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
