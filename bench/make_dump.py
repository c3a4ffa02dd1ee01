#!/usr/bin/env python3
"""Writes a synthetic MediaWiki dump for benchmarks: the real pages of the shared enwiki fixture
and of the bundled Portuguese demo dump, repeated with fresh ids and titles until the XML reaches
the requested size, behind a <siteinfo> header (WikiExtractor needs one).

usage: make_dump.py OUT.xml SIZE_MB [--multistream OUT.xml.bz2 --pages-per-stream N]
"""
import bz2
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="pt">
  <siteinfo>
    <sitename>Wikipédia</sitename>
    <dbname>ptwiki</dbname>
    <base>https://pt.wikipedia.org/wiki/Wikip%C3%A9dia:P%C3%A1gina_principal</base>
    <generator>MediaWiki 1.41.0</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="4" case="first-letter">Wikipédia</namespace>
      <namespace key="10" case="first-letter">Predefinição</namespace>
    </namespaces>
  </siteinfo>
"""
FOOTER = "</mediawiki>\n"


def source_pages():
    texts = [(ROOT / "demo" / "ptwiki-demo.xml").read_text(encoding="utf-8")]
    fixture = ROOT.parent / "shared" / "fixtures" / "wiki" / "enwiki-table-markup.xml.bz2"
    if fixture.exists():
        texts.append(bz2.decompress(fixture.read_bytes()).decode("utf-8"))
    pages = []
    for text in texts:
        pages += re.findall(r"  <page>.*?</page>\n", text, flags=re.S)
    # Keep only well-formed main-namespace articles so both tools see the same work.
    return [p for p in pages if "<title>" in p and "<ns>0</ns>" in p]


def pages_until(size_bytes):
    pages = source_pages()
    written, n = len(HEADER.encode()), 0
    while written < size_bytes:
        for page in pages:
            n += 1
            page = re.sub(r"<title>(.*?)</title>", lambda m: f"<title>{m.group(1)} {n}</title>", page, count=1)
            page = re.sub(r"<id>\d+</id>", f"<id>{n}</id>", page, count=1)
            written += len(page.encode())
            yield page
            if written >= size_bytes:
                return


def main():
    out, size_mb = Path(sys.argv[1]), float(sys.argv[2])
    multistream = sys.argv[sys.argv.index("--multistream") + 1] if "--multistream" in sys.argv else None
    per_stream = int(sys.argv[sys.argv.index("--pages-per-stream") + 1]) if "--pages-per-stream" in sys.argv else 100
    with open(out, "w", encoding="utf-8") as xml:
        xml.write(HEADER)
        for page in pages_until(int(size_mb * 1e6)):
            xml.write(page)
        xml.write(FOOTER)
    if multistream:
        # Like Wikipedia's -multistream dumps: header, groups of pages, footer, each its own stream.
        text = out.read_text(encoding="utf-8")
        pages = re.findall(r"  <page>.*?</page>\n", text, flags=re.S)
        with open(multistream, "wb") as ms:
            ms.write(bz2.compress(HEADER.encode(), 9))
            for i in range(0, len(pages), per_stream):
                ms.write(bz2.compress("".join(pages[i:i + per_stream]).encode(), 9))
            ms.write(bz2.compress(FOOTER.encode(), 9))


if __name__ == "__main__":
    main()
