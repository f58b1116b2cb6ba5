"""Rewrite the generated parts of the docs: the settings table and the source layout.

Run `python scripts/gen_docs.py` (with barkserve importable: `make install`, or `PYTHONPATH=src`) after
changing a setting, a flag of `barkserve serve`, a module or its docstring. A generated part sits
between `<!-- generated: NAME -->` and `<!-- /generated -->` in README.md or docs/*.md;
`tests/test_docs.py` fails while one differs from what this script writes. `--check` only lists the
stale parts (exit status 1).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIX = "python scripts/gen_docs.py"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.DOTALL)
# config.py describes hubert_layer in the comment above `hubert` ("HuBERT, its layer, and the quantizer").
DESCRIBED_WITH = {"hubert_layer": "hubert"}


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    env: str
    default: str
    flag: str
    description: str


def doc_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files that may hold generated parts or links: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# --- settings -------------------------------------------------------------------------------------------


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """Each field of a dataclass -> (its own comment, the comment of the run of fields it ends).

    A field's own comment is the block of `#` lines right above it. Fields with none share the comment
    of the last field above them that has one ("Address and worker threads" above host, port, threads).
    """
    source = Path(sys.modules[cls.__module__].__file__ or "").read_text(encoding="utf-8")
    lines = source.splitlines()
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    comments: dict[str, tuple[str, str]] = {}
    shared = ""
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        block: list[str] = []
        index = item.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            block.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        own = " ".join(block)
        shared = own or shared
        comments[item.target.id] = (own, shared)
    return comments


def serve_flags() -> dict[str, Any]:
    """The options of `barkserve serve` by the setting they set (click's parameter name)."""
    from barkserve.cli.serve import serve

    return {param.name: param for param in serve.params if param.name}


def flag_text(option: Any) -> str:
    names = [*option.opts, *option.secondary_opts]
    return " / ".join(f"`{name}`" for name in names)


def default_text(spec: Field[Any]) -> str:
    if spec.default is not MISSING:
        value = spec.default
    elif spec.default_factory is not MISSING:
        value = spec.default_factory()
    else:
        return "(required)"
    if value is None:
        return "(none)"
    if value in ("", ()):
        return "(empty)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple):
        return "`" + ",".join(map(str, value)) + "`"
    return f"`{value}`"


def describe(name: str, comments: dict[str, tuple[str, str]], option: Any) -> str:
    """A setting's description: its own comment, else its flag's help, else the comment it shares."""
    own, shared = comments[DESCRIBED_WITH.get(name, name)]
    if own:
        return own
    if option is not None and option.help:
        text = re.sub(r"\s*\[[^\]]*\]$", "", option.help)
        choices = getattr(option.type, "choices", None)
        return text + (" One of " + ", ".join(f"`{c}`" for c in choices) + "." if choices else "")
    return shared


def settings() -> list[Setting]:
    """Every setting, in ServerConfig's order, the engine's at the place of its `engine` field."""
    from barkserve.config import ENGINE_SETTINGS, ENV_PREFIX, EngineConfig, ServerConfig

    flags = serve_flags()
    server, engine = field_comments(ServerConfig), field_comments(EngineConfig)
    engine_fields = {spec.name: spec for spec in fields(EngineConfig)}
    rows: list[tuple[str, Field[Any], dict[str, tuple[str, str]], str]] = []
    for spec in fields(ServerConfig):
        if spec.name == "engine":
            rows += [(flat, engine_fields[attr], engine, attr) for flat, attr in ENGINE_SETTINGS.items()]
        else:
            rows.append((spec.name, spec, server, spec.name))
    result = []
    for name, spec, comments, attr in rows:
        option = flags.get(name)
        result.append(
            Setting(
                name=name,
                env=f"`{ENV_PREFIX}{name.upper()}`",
                default=default_text(spec),
                flag=flag_text(option) if option is not None else "-",
                description=describe(attr, comments, option),
            )
        )
    return result


def render_settings(root: Path = ROOT) -> str:
    lines = ["| setting | environment variable | `serve` flag | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for s in settings():
        cells = [f"`{s.name}`", s.env, s.flag, s.default, s.description]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


# --- layout ---------------------------------------------------------------------------------------------


def summary(path: Path) -> str:
    """A module's summary: its docstring's first paragraph on one line ("" when it has no docstring).

    Usually the docstring's first line; a summary sentence that runs onto a second line is kept whole.
    """
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def entry(depth: int, name: str, text: str) -> str:
    return "  " * depth + f"- `{name}`" + (f": {text}" if text else "")


def visible(folder: Path) -> Iterator[Path]:
    """The files and folders of `folder` that belong to the project: not hidden, not ignored by git
    (e.g. the voice prompts `make install` fetches into tests/fixtures/)."""
    for path in sorted(folder.iterdir()):
        if not path.name.startswith((".", "__pycache__")) and not git_ignored(path):
            yield path


def git_ignored(path: Path) -> bool:
    """Whether git ignores `path` (False outside a git checkout)."""
    try:
        found = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=path.parent, capture_output=True)
    except OSError:
        return False
    return found.returncode == 0


def package_lines(folder: Path, depth: int) -> list[str]:
    """A package's modules (each with its docstring's first line), then its sub-folders."""
    lines = []
    children = list(visible(folder))
    for path in children:
        if path.suffix == ".py" and path.name != "__init__.py":
            lines.append(entry(depth, path.name, summary(path)))
    for path in children:
        if not path.is_dir():
            continue
        if (path / "__init__.py").exists():
            lines.append(entry(depth, path.name + "/", summary(path / "__init__.py")))
            lines += package_lines(path, depth + 1)
        else:  # data shipped with the package (the web page, the eval report's schema)
            lines.append(entry(depth, path.name + "/", ", ".join(p.name for p in visible(path) if p.is_file())))
    return lines


def test_lines(folder: Path, depth: int) -> list[str]:
    """A test folder's sub-folders, each with the names of its Python files."""
    lines = []
    for path in visible(folder):
        if path.is_dir():
            modules = [p.stem for p in visible(path) if p.suffix == ".py"]
            lines.append(entry(depth, path.name + "/", ", ".join(modules)))
            lines += test_lines(path, depth + 1)
    return lines


def render_layout(root: Path = ROOT) -> str:
    package = root / "src" / "barkserve"
    lines = [entry(0, "src/barkserve/", summary(package / "__init__.py"))]
    lines += package_lines(package, 1)
    tests = root / "tests"
    lines.append(entry(0, "tests/", "the tests; each module's docstring says what it proves"))
    lines += [entry(1, p.name, summary(p)) for p in visible(tests) if p.suffix == ".py"]
    lines += test_lines(tests, 1)
    lines.append(entry(0, "benchmarks/", "speed, measured outside the tests (`make bench`)"))
    lines += package_lines(root / "benchmarks", 1)
    return "\n".join(lines) + "\n"


# --- the files --------------------------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[Path], str]] = {"settings": render_settings, "layout": render_layout}


def regenerate(text: str, root: Path = ROOT) -> str:
    """`text` with every generated part rewritten; an unknown part's name is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise SystemExit(f"unknown generated part {name!r}; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name](root) + match.group(4)

    return BLOCK.sub(replace, text)


def stale(root: Path = ROOT) -> list[Path]:
    """The files whose generated parts differ from what this script writes."""
    texts = {path: path.read_text(encoding="utf-8") for path in doc_files(root)}
    return [path for path, text in texts.items() if regenerate(text, root) != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only list the files that are out of date")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale()
        for path in paths:
            print(f"{path.relative_to(ROOT)} is out of date; run: {FIX}")
        return 1 if paths else 0
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
