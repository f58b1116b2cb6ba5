"""The docs: generated parts up to date, every setting in the table and true to it, every link leads somewhere."""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import pytest

from barkserve.config import ENGINE_SETTINGS, ENV_PREFIX, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
FIX = "python scripts/gen_docs.py"
README_MAX_LINES = 350


def load_script() -> ModuleType:
    """scripts/gen_docs.py, the script the docs are generated with (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


gen_docs = load_script()
DOC_FILES = gen_docs.doc_files(ROOT)
SETTINGS = [f.name for f in fields(ServerConfig) if f.name != "engine"] + list(ENGINE_SETTINGS)


def generated_parts() -> dict[str, list[tuple[Path, str]]]:
    """Each generated part's name -> (file, committed text) of every place it appears."""
    parts: dict[str, list[tuple[Path, str]]] = {}
    for path in DOC_FILES:
        for match in gen_docs.BLOCK.finditer(path.read_text(encoding="utf-8")):
            parts.setdefault(match["name"], []).append((path, match["body"]))
    return parts


# --- generated parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(gen_docs.RENDERERS))
def test_generated_part_is_current(name: str) -> None:
    places = generated_parts().get(name)
    assert places, f"no file holds <!-- generated: {name} --> ... <!-- /generated -->; add it, then run: {FIX}"
    expected = gen_docs.RENDERERS[name](ROOT)
    for path, committed in places:
        if committed != expected:
            lines = difflib.unified_diff(
                committed.splitlines(), expected.splitlines(), "committed", "generated", lineterm=""
            )
            diff = "\n".join(list(lines)[:20])
            pytest.fail(f"{path.relative_to(ROOT)}: the generated part {name!r} is out of date; run: {FIX}\n{diff}")


def table_rows() -> dict[str, list[str]]:
    """The committed settings table: setting name -> its cells."""
    (_, body), *_ = generated_parts()["settings"]
    rows = {}
    for line in body.splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells
    return rows


def test_settings_table_lists_every_setting() -> None:
    rows = table_rows()
    missing = [name for name in SETTINGS if name not in rows]
    assert not missing, f"docs/configuration.md's settings table lacks {missing}; run: {FIX}"
    unknown = sorted(set(rows) - set(SETTINGS))
    assert not unknown, f"docs/configuration.md's settings table lists {unknown}, which are not settings; run: {FIX}"
    no_meaning = [name for name, cells in rows.items() if not cells[4]]
    assert not no_meaning, f"settings with no description: {no_meaning}; give each a comment in config.py"


# A value other than the default for the settings whose values are constrained.
OTHER_VALUES = {
    "device": "cpu",
    "dtype": "float32",
    "attention": "flash_attention_2",
    "engine": "reference",
    "kernels": "packed",
    "quantize": "int8",
    "log_format": "json",
    "auth": "on",
    "limits_storage": "redis://localhost:6379",
    "openai_voices": "alloy=v2/en_speaker_1",
    "mos_model": "dnsmos",
    "webhook_allow_networks": "10.0.0.0/8,192.168.0.0/16",
}


AUDIOBOOKSHELF = ("audiobookshelf_url", "audiobookshelf_token", "audiobookshelf_library", "audiobookshelf_folder")
OTHER_VALUES["audiobookshelf_url"] = "http://abs.example"


def current(config: ServerConfig, name: str) -> object:
    return getattr(config.engine, ENGINE_SETTINGS[name]) if name in ENGINE_SETTINGS else getattr(config, name)


def other_value(name: str, default: object) -> str:
    """A value of the setting as its variable or flag would spell it, different from its default."""
    if name in OTHER_VALUES:
        return OTHER_VALUES[name]
    if isinstance(default, bool):
        return "false" if default else "true"
    if isinstance(default, int | float):
        return str(default + 1)
    if default is None:
        return "1.5"
    if isinstance(default, tuple):
        return "a.example,b.example"
    return "other-value"


@pytest.mark.parametrize("name", SETTINGS)
def test_each_setting_is_its_variable_and_the_flag_the_table_says(name: str) -> None:
    from barkserve.cli.serve import serve

    default = current(ServerConfig(), name)
    value = other_value(name, default)
    variable = ENV_PREFIX + name.upper()
    env = {variable: value}
    if name.startswith("audiobookshelf_"):  # the four are set together or not at all
        env = {ENV_PREFIX + n.upper(): OTHER_VALUES.get(n, "x") for n in AUDIOBOOKSHELF} | env
    from_env = ServerConfig.from_sources(env=env)
    assert current(from_env, name) != default, f"{variable}={value} did not change {name}"

    row = table_rows().get(name)
    assert row, f"docs/configuration.md's settings table lacks {name}; run: {FIX}"
    _, env, flag, *_ = row
    assert env == f"`{variable}`"
    options = {param.name: param for param in serve.params}
    if flag == "-":
        assert name not in options, f"`barkserve serve` has a flag for {name}, the table says none; run: {FIX}"
        return
    assert name in options, f"the table gives {name} the flag {flag}, which `barkserve serve` lacks; run: {FIX}"
    first = flag.split(" / ")[0].strip("`")
    args = [first] if getattr(options[name], "is_flag", False) else [first, value]
    context = serve.make_context("serve", args)
    assert context.params[name] is not None, f"{first} did not set {name}"


# --- links ----------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a Markdown file's lines outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"[^\w\- ]", "", text.lower())  # word characters, '-', '_' and spaces stay
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if match:
            base = slug(match[2])
            result.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return result


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line: target (why)` for each relative link or #anchor of the file that leads nowhere."""
    broken = []
    for number, line in prose_lines(path):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not checked here
                continue
            file_part, _, anchor = target.partition("#")
            where = f"{path.relative_to(root)}:{number}: {target}"
            resolved = (path.parent / file_part).resolve() if file_part else path
            if file_part.startswith("/") or not resolved.is_relative_to(root):
                broken.append(f"{where} (leaves the repository)")
            elif not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where} (no heading with that anchor in {resolved.relative_to(root)})")
    return broken


def test_every_link_in_the_docs_resolves() -> None:
    broken = [link for path in DOC_FILES for link in broken_links(path)]
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("`POST /v1/audio/speech` (OpenAI-compatible)", "post-v1audiospeech-openai-compatible"),
        ("Synthesize: `POST /synthesize`", "synthesize-post-synthesize"),
        ("Quality control's cost", "quality-controls-cost"),
        ("On a GPU (H100)", "on-a-gpu-h100"),
        ("max_text_chars and [links](x.md)", "max_text_chars-and-links"),
    ],
)
def test_anchors_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_docs_have_pages_and_the_link_check_reads_them(tmp_path: Path) -> None:
    assert len(DOC_FILES) > 5, "README.md and docs/*.md should be found"
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A b\n\n[ok](#a-b) [bad](#nothing) `[code](#nothing)`\n```\n[fenced](#x)\n```\n")
    (tmp_path / "other.md").write_text("# Other\n")
    page.write_text(page.read_text() + "[file](other.md#other) [gone](missing.md) [out](../x.md)\n")
    assert broken_links(page, tmp_path) == [
        "page.md:5: #nothing (no heading with that anchor in page.md)",
        "page.md:9: missing.md (no such file)",
        "page.md:9: ../x.md (leaves the repository)",
    ]


# --- the README -----------------------------------------------------------------------------------------


def test_readme_is_a_map() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, at most {README_MAX_LINES}: move reference to docs/"
    )
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("serve", "test"):
        assert f"\nmake {target} " in text, f"README.md's Quickstart lost `make {target}`"
        assert re.search(rf"^{target}:", makefile, re.M), f"`make {target}` is no Makefile target"
