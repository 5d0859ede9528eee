"""The user docs stay true: every `bnnx` command in README.md and bench/README.md parses with
app.py's own parser (bench flags with the bench script's), the explorer labels they name exist,
and the `bnnx` console script is declared as app.py's main()."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = ".venv/bin/bnnx"


def commands(text: str) -> list[list[str]]:
    """The argv of every `.venv/bin/bnnx ...` in code blocks and inline code spans."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += re.findall(r"`([^`\n]*)`", prose)
    found = []
    for line in lines:
        if SCRIPT not in line:
            continue
        line = line.split(SCRIPT, 1)[1].split("  #", 1)[0]
        found.append(shlex.split(line))
    return found


ALL = [(str(doc.relative_to(ROOT)), argv)
       for doc in DOCS for argv in commands(doc.read_text())]


def test_docs_show_commands() -> None:
    subcommands = {argv[0] for _, argv in ALL if argv}
    assert {"search", "worker", "train", "summary", "export", "predict", "repair",
            "bench"} <= subcommands


@pytest.mark.parametrize(("doc", "argv"), ALL, ids=[" ".join(a) or "explorer" for _, a in ALL])
def test_command_parses(doc: str, argv: list[str]) -> None:
    if "ARGS" in argv or "--help" in argv and argv[:1] != ["bench"]:
        return  # a placeholder, or help text that parses by definition
    try:
        args = app.build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `bnnx {' '.join(argv)}` does not parse (exit {exc.code})")
    if argv[:1] == ["bench"]:
        script = ROOT / "bench" / f"{args.suite}.py"
        assert script.is_file(), f"{doc}: no benchmark {args.suite!r}"
        source = script.read_text()
        for flag in (a for a in args.rest if a.startswith("--") and a != "--help"):
            assert f'add_argument("{flag}"' in source, f"{doc}: {script.name} has no {flag}"


def test_explorer_labels_exist() -> None:
    """Every control the README's explorer section names in bold is a label in explorer/."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The explorer", 1)[1].split("\n## ", 1)[0]
    labels = set(re.findall(r"\*\*([^*]+)\*\*", section))
    assert {"Start search", "Export trial", "New search", "Searches", "Resume"} <= labels
    source = "".join(p.read_text() for p in (ROOT / "explorer").glob("*.py"))
    for label in labels:
        assert f'"{label}"' in source, f"README names **{label}**, which explorer/ lacks"


def test_readme_points_nowhere_a_clone_lacks() -> None:
    for doc in DOCS:
        text = doc.read_text()
        assert "runs/bench/" not in text.replace("runs/bench/<suite>.json", ""), doc
        assert not re.search(r"(^|[\s`])python app\.py", text, flags=re.M), doc  # bnnx


def test_console_script_is_app_main() -> None:
    """`bnnx` runs app.main, and app.py ships as a top-level module (wheel and editable)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\[project\.scripts\]\nbnnx = "app:main"', pyproject, flags=re.M)
    packages = re.search(r"^wheel\.packages = \[(.*)\]$", pyproject, flags=re.M)
    assert packages and '"app.py"' in packages.group(1)
