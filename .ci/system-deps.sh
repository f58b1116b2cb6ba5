#!/usr/bin/env bash
# Debian packages the tests use: espeak-ng (real speech for the quality tests), chromium and its
# WebDriver (the web page and eval report tests), and the real-book corpus (tests/books/test_corpus.py):
# documentation EPUBs and PDFs that Debian packages ship (SiSU, Sphinx, DocBook XSL, DBLaTeX), the
# producers that make more corpus books in the test run from text those packages ship (pandoc; pdflatex
# from texlive-latex-base; groff and Ghostscript's ps2pdf; debian-handbook's Arabic pages), and
# poppler-utils (pdftotext counts a PDF's words apart from barkserve's reader), and epubcheck (the W3C's
# EPUB validator, a Java jar that pulls in default-jre; tests/books/test_readalong*.py validate the
# read-along books with it, run as `java -jar`, since containers often lack binfmt_misc). Installed when missing
# and this user can; otherwise a hint (outside CI those tests then skip; under CI=true they fail).
# The corpus packages are about 14 MB of .debs (about 35 MB installed); downloading the largest seven took 1.9 s
# here, and they are documentation only (no maintainer scripts beyond the docs index). The producers
# add about 61 MB of .debs (pandoc 22 MB, texlive-latex-base and its texlive-base 39 MB) and
# debian-handbook 35 MB: installing pandoc and texlive-latex-base took 31 s here (most of it building
# the TeX formats), debian-handbook 3 s. (Project Gutenberg's ebookmaker comes from PyPI: the dev extra.)
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
command -v epubcheck >/dev/null || missing+=(epubcheck)
# The producers without their recommends (pandoc's and TeX's would pull in hundreds of MB).
producers=()
command -v pandoc >/dev/null || producers+=(pandoc)
command -v pdflatex >/dev/null || producers+=(texlive-latex-base)
command -v groff >/dev/null || producers+=(groff)
command -v ps2pdf >/dev/null || producers+=(ghostscript)
corpus=(
  live-manual-epub ubuntu-packaging-guide-epub ubuntu-packaging-guide-epub-de ubuntu-packaging-guide-epub-es
  ubuntu-packaging-guide-epub-fr ubuntu-packaging-guide-epub-pt-br ubuntu-packaging-guide-epub-ru
  ubuntu-packaging-guide-epub-uk debian-history debian-reference-en debian-reference-de debian-reference-ja
  debian-reference-zh-cn debian-handbook groff-base
)
# The container image (packaging/build-image.sh, tests/packaging/test_image.py): a Debian root filesystem
# (mmdebstrap), the OCI image (umoci), its labels (skopeo), and Debian's python3 with pip for the image's wheels.
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v umoci >/dev/null || missing+=(umoci)
command -v skopeo >/dev/null || missing+=(skopeo)
dpkg -s python3-pip >/dev/null 2>&1 || missing+=(python3-pip)
# German jokes with dialogue (tests/books/test_cast_accuracy_de.py measures German speaker attribution on them).
dpkg -s fortunes-de >/dev/null 2>&1 || missing+=(fortunes-de)
for package in "${corpus[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ] && [ ${#producers[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >&2
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
  if [ ${#producers[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${producers[@]}" >&2
  fi
else
  echo "not installed: ${missing[*]} ${producers[*]} (Debian: sudo apt-get install ${missing[*]} ${producers[*]});" \
    "their tests will skip" >&2
fi
