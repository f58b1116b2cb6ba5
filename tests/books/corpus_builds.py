"""Corpus books that real producers make in the test run, from real text that Debian packages ship.

Each recipe takes freely licensed text from a package that `.ci/system-deps.sh` installs and runs the
producer as its users do; tests/books/corpus/README.md lists the sources and their licences. The only
changes made to the sources are the page chrome of the HTML manuals (navigation bars, "Download the
ebook" banners), which is not part of the book, and one case named in its recipe.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree, html

HISTORY = Path("/usr/share/doc/debian-history/docs")
HISTORY_CHAPTERS = ("intro", "leaders", "releases", "detailed", "manifesto")
HANDBOOK_AR = Path("/usr/share/doc/debian-handbook/html/ar-MA")
# The pages of the Arabic Debian Administrator's Handbook that are translated (the others are mostly English).
HANDBOOK_AR_PAGES = (
    "preface",
    "sect.who-is-this-book-for",
    "sect.selected-approach",
    "case-study",
    "sect.master-plan",
    "sect.user-space",
)
LICENSES = Path("/usr/share/common-licenses")
GROFF_DOCS = Path("/usr/share/doc/groff-base")


@dataclass(frozen=True)
class Recipe:
    """How one corpus file is made: the programs it needs and the function that writes it into a folder."""

    tools: tuple[str, ...]
    sources: tuple[Path, ...]
    make: Callable[[Path], Path]


def run(*args: str | Path, cwd: Path) -> None:
    """Run a producer; its output on failure."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")


def without_chrome(source: Path, out: Path, lang: str | None = None) -> Path:
    """An HTML page without its navigation bars and banner (DocBook XSL and Publican page chrome)."""
    doc = html.parse(str(source)).getroot()
    chrome = '//div[@class="navheader" or @class="navfooter"] | //*[@id="banner"] | //ul[@class="docnav"]'
    for element in doc.xpath(chrome):
        element.getparent().remove(element)
    if lang is not None:
        doc.set("lang", lang)
        doc.set("dir", "rtl")
    out.write_bytes(etree.tostring(doc, method="html", encoding="utf-8"))
    return out


def history_pages(folder: Path, lang: str) -> list[Path]:
    """debian-history's chapters in `lang` (DocBook XSL's chunked HTML), page chrome removed."""
    names = [f"{chapter}.{lang}.html" for chapter in HISTORY_CHAPTERS]
    return [without_chrome(HISTORY / name, folder / name) for name in names]


def pandoc(folder: Path, out: str, pages: list[Path], *options: str) -> Path:
    # -native_divs: DocBook wraps each heading in <div>s; pandoc splits files only at unwrapped headings.
    run("pandoc", "-f", "html-native_divs", *options, "-o", out, *pages, cwd=folder)
    return folder / out


def pandoc_epub2(folder: Path) -> Path:
    """EPUB 2 (NCX only), a file per chapter, the NCX nesting sections in chapters."""
    pages = history_pages(folder, "it")
    meta = ["-M", "title=Breve storia di Debian", "-M", "author=Debian Documentation Team", "-M", "lang=it"]
    return pandoc(folder, "project-history.it.epub", pages, "-t", "epub2", "--toc-depth=2", *meta)


def pandoc_epub3_split(folder: Path) -> Path:
    """EPUB 3 whose contents list chapters only while its files are sections: a chapter spreads over several
    files, and chapter 4's first file is only the chapter's list of sections."""
    pages = history_pages(folder, "pt")
    meta = ["-M", "title=Uma Breve História da Debian", "-M", "lang=pt-BR"]
    return pandoc(
        folder, "project-history.pt.epub", pages, "-t", "epub3", "--epub-chapter-level=2", "--toc-depth=1", *meta
    )


def pandoc_epub3_arabic(folder: Path) -> Path:
    """EPUB 3 right to left, in Arabic (a language Bark does not speak)."""
    pages = [without_chrome(HANDBOOK_AR / f"{p}.html", folder / f"{p}.html", "ar") for p in HANDBOOK_AR_PAGES]
    meta = ["-M", "title=دفتر مدير دبيان", "-M", "author=Raphaël Hertzog, Roland Mas", "-M", "lang=ar", "-M", "dir=rtl"]
    return pandoc(folder, "debian-handbook.ar.epub", pages, "-t", "epub3", "--toc-depth=2", *meta)


def nav_only(folder: Path) -> Path:
    """EPUB 3 with a navigation document and no NCX. No producer we can install writes one (pandoc,
    Sphinx and ebookmaker all add an NCX for EPUB 2 readers), but EPUB 3 allows it and some
    producers do: this is pandoc's EPUB 3 of debian-history's Spanish text with its NCX taken out."""
    made = pandoc(
        folder,
        "pandoc.es.epub",
        history_pages(folder, "es"),
        *("-t", "epub3", "--toc-depth=2", "-M", "title=Una breve historia de Debian", "-M", "lang=es"),
    )
    out = folder / "project-history.es.epub"
    with zipfile.ZipFile(made) as old, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename.endswith("toc.ncx"):
                continue
            if info.filename.endswith(".opf"):
                data = re.sub(rb'<item id="ncx"[^>]*/>', b"", data).replace(b'<spine toc="ncx">', b"<spine>")
            new.writestr(info, data)
    return out


def ebookmaker(folder: Path, lang: str, title: str, make: str) -> Path:
    """Project Gutenberg's ebookmaker on one HTML file of debian-history's chapters (as PG's HTML books are)."""
    bodies = []
    for page in history_pages(folder, lang):
        body = html.parse(str(page)).getroot().find("body")
        bodies.append("".join(etree.tostring(child, method="html", encoding="unicode") for child in body))
    source = folder / f"history.{lang}.html"
    source.write_text(
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body>{''.join(bodies)}</body></html>",
        encoding="utf-8",
    )
    maker = Path(sys.executable).with_name("ebookmaker")
    author = "Debian Documentation Team"
    run(maker, "--make", make, "--title", title, "--author", author, "--ebook", "1", "--output-dir", "out",
        "--output-file", "hist", source.name, cwd=folder)  # fmt: skip
    made = next((folder / "out").glob("hist-*.epub"))
    return made.rename(folder / f"project-history.{lang}.epub")


def latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "^": r"\^{}",
                "_": r"\_", "%": r"\%", "~": r"\~{}", "<": r"\textless{}", ">": r"\textgreater{}"}  # fmt: skip
    return "".join(specials.get(c, c) for c in text)


def license_latex(text: str, heading: re.Pattern[str], skip: int) -> str:
    """A licence's plain text (its first `skip` lines left out) as LaTeX: `heading` lines become sections."""
    out, paragraph = [], []
    for line in [*text.splitlines()[skip:], ""]:
        if heading.fullmatch(line.strip()) and not paragraph:
            out.append(rf"\section*{{{latex_escape(line.strip())}}}" + "\n")
            continue
        if line.strip():
            paragraph.append(latex_escape(line.strip()))
        elif paragraph:
            out.append(" ".join(paragraph) + "\n")
            paragraph = []
    return "\n".join(out)


def pdflatex(folder: Path, name: str, preamble: str, body: str, runs: int = 1) -> Path:
    (folder / f"{name}.tex").write_text(
        preamble + "\n\\begin{document}\n" + body + "\n\\end{document}\n", encoding="utf-8"
    )
    for _ in range(runs):  # hyperref writes the outline on the second run
        run("pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex", cwd=folder)
    return folder / f"{name}.pdf"


def latex_twocolumn(folder: Path) -> Path:
    """The GPL 3 in two columns, with a running head and page numbers, and no outline."""
    text = (LICENSES / "GPL-3").read_text(encoding="utf-8")
    heading = re.compile(r"\d{1,2}\. [A-Z].{0,80}\.|[A-Z][A-Za-z ]{5,60}")
    preamble = (
        r"\documentclass[twocolumn]{article}"
        "\n\\pdfinfo{/Title (GNU General Public License) /Author (Free Software Foundation)}"
        "\n\\pagestyle{myheadings}\\markright{GNU GENERAL PUBLIC LICENSE}"
    )
    return pdflatex(folder, "gpl-3.twocolumn", preamble, license_latex(text, heading, 6))


def latex_outline(folder: Path) -> Path:
    """The GNU FDL 1.3 with an outline (hyperref bookmarks), a declared language and a running head."""
    text = (LICENSES / "GFDL-1.3").read_text(encoding="utf-8")
    heading = re.compile(r"\d{1,2}\. [A-Z ]{4,60}|ADDENDUM: .{5,80}")
    preamble = (
        r"\documentclass{article}"
        "\n\\usepackage[bookmarks=true]{hyperref}"
        "\n\\hypersetup{pdftitle={GNU Free Documentation License},pdfauthor={Free Software Foundation},pdflang={en-US}}"
        "\n\\pagestyle{myheadings}\\markright{GNU Free Documentation License}"
    )
    body = license_latex(text, heading, 9).replace(r"\section*", r"\section")
    return pdflatex(folder, "gfdl-1.3", preamble, body, runs=2)


def groff_me(folder: Path, name: str) -> Path:
    """A groff -me paper (groff's own introduction to -me) through PostScript and Ghostscript's ps2pdf:
    running heads, page numbers, footnotes, no outline."""
    (folder / f"{name}.me").write_bytes(gzip.decompress((GROFF_DOCS / f"{name}.me.gz").read_bytes()))
    # -k: preconv reads the UTF-8 source (the French one has accents).
    groff = ["groff", "-k", "-me", "-Tps", f"{name}.me"]
    postscript = subprocess.run(groff, cwd=folder, capture_output=True, check=True)
    (folder / f"{name}.ps").write_bytes(postscript.stdout)
    run("ps2pdf", f"{name}.ps", f"{name}.pdf", cwd=folder)
    return folder / f"{name}.pdf"


HISTORY_SOURCES = (HISTORY / "intro.en.html",)
RECIPES: dict[str, Recipe] = {
    "built/pandoc-epub2/project-history.it.epub": Recipe(("pandoc",), HISTORY_SOURCES, pandoc_epub2),
    "built/pandoc-epub3/project-history.pt.epub": Recipe(("pandoc",), HISTORY_SOURCES, pandoc_epub3_split),
    "built/pandoc-epub3/debian-handbook.ar.epub": Recipe(
        ("pandoc",), (HANDBOOK_AR / "preface.html",), pandoc_epub3_arabic
    ),
    "built/pandoc-epub3-nav-only/project-history.es.epub": Recipe(("pandoc",), HISTORY_SOURCES, nav_only),
    "built/ebookmaker-epub3/project-history.fr.epub": Recipe(
        (), HISTORY_SOURCES, lambda f: ebookmaker(f, "fr", "Bref historique de Debian", "epub3")
    ),
    "built/ebookmaker-epub2/project-history.ru.epub": Recipe(
        (), HISTORY_SOURCES, lambda f: ebookmaker(f, "ru", "Краткая история Debian", "epub")
    ),
    "built/pdflatex/gpl-3.twocolumn.pdf": Recipe(("pdflatex",), (LICENSES / "GPL-3",), latex_twocolumn),
    "built/pdflatex/gfdl-1.3.pdf": Recipe(("pdflatex",), (LICENSES / "GFDL-1.3",), latex_outline),
    "built/groff-me/meintro.pdf": Recipe(
        ("groff", "ps2pdf"), (GROFF_DOCS / "meintro.me.gz",), lambda f: groff_me(f, "meintro")
    ),
    "built/groff-me/meintro_fr.pdf": Recipe(
        ("groff", "ps2pdf"), (GROFF_DOCS / "meintro_fr.me.gz",), lambda f: groff_me(f, "meintro_fr")
    ),
}


def missing(recipe: Recipe) -> list[str]:
    """What this machine lacks to make the file: programs and source files."""
    tools = [t for t in recipe.tools if shutil.which(t) is None]
    if not recipe.tools and not Path(sys.executable).with_name("ebookmaker").exists():
        tools.append("ebookmaker (pip install ebookmaker)")
    return tools + [str(s) for s in recipe.sources if not s.exists()]


def build(key: str, folder: Path) -> Path:
    """Make the corpus file `key` in `folder` (a fresh folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    return RECIPES[key].make(folder)
