#!/usr/bin/env python3
"""Assemble the bundled model's training corpus from English text in Debian packages (no internet).

Install the packages first (Debian 12 "bookworm", section main)::

    apt-get install -y --no-install-recommends fortunes fortunes-min python3.11-doc \
        debian-handbook debian-reference-en jargon-text dict-devil perl-doc \
        postgresql-doc-15 linux-doc-6.1

then::

    python3 scripts/make_corpus.py --out data/corpus            # writes train.txt, val.txt, manifest.json

Output format (what ``mmfree.train`` reads): UTF-8 text, one document after another, documents
separated by a line holding only the ASCII record separator ``\\x1e``. Long documents are cut at
paragraph boundaries into pieces of at most ``--max-doc-chars`` characters; each piece is a document.
The split is deterministic: a document goes to validation when the first 8 hex digits of
sha256(source + ":" + key + ":" + piece index) are below ``--val-fraction`` of 2**32.
Sources that are missing are skipped with a warning (and left out of the manifest).
Standard library only, so it runs with any Python 3.8+.
"""

import argparse
import glob
import gzip
import hashlib
import html
import html.parser
import json
import os
import re
import sys

DOC_SEP = "\x1e"

# (name, licence, package) for the model card; the extractor functions below yield (key, text).
SOURCES = {
    "python-docs": ("Python 3.11 documentation (reST sources)", "PSF License (Python documentation)", "python3.11-doc"),
    "fortunes": ("BSD fortune cookies (English, non-offensive)", "BSD fortune-mod distribution, Debian main", "fortunes, fortunes-min"),
    "debian-handbook": ("The Debian Administrator's Handbook (en-US HTML)", "GPL-2.0+ or CC-BY-SA-3.0", "debian-handbook"),
    "debian-reference": ("Debian Reference (English plain text)", "GPL-2+", "debian-reference-en"),
    "jargon": ("The Jargon File 4.4.7", "public domain", "jargon-text"),
    "devil": ("Ambrose Bierce, The Devil's Dictionary", "public domain", "dict-devil"),
    "perl-docs": ("Perl 5.36 documentation (POD)", "GPL-1+ or Artistic", "perl-doc"),
    "postgresql-docs": ("PostgreSQL 15 documentation (HTML)", "PostgreSQL Licence", "postgresql-doc-15"),
    "linux-docs": ("Linux 6.1 kernel documentation (reST sources)", "GPL-2", "linux-doc-6.1"),
}


# ------------------------------------------------------------------------------------ cleaning
def normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace(DOC_SEP, " ").replace("\f", "\n")
    text = text.replace("\u00a0", " ")
    lines = [ln.rstrip() for ln in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page, block elements as line breaks; navigation and code listings
    with classes in SKIP_CLASSES are dropped."""

    SKIP_TAGS = {"script", "style", "head", "title", "nav", "footer"}
    SKIP_CLASSES = ("navheader", "navfooter", "toc", "sphinxsidebar", "related", "footer", "header",
                    "breadcrumb", "headerlink", "docnav", "legalnotice")
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "dt", "dd", "dl", "h1", "h2", "h3", "h4", "h5", "h6",
             "pre", "table", "tr", "section", "blockquote", "hr", "article"}
    VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.skip_tag, self.skip_depth = None, 0

    def handle_starttag(self, tag, attrs):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        cls = dict(attrs).get("class") or ""
        if tag in self.SKIP_TAGS or (tag not in self.VOID and any(c in cls for c in self.SKIP_CLASSES)):
            if tag not in self.VOID:
                self.skip_tag, self.skip_depth = tag, 1
            return
        if tag in self.BLOCK:
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "pre", "dt") else "\n")

    def handle_endtag(self, tag):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip_tag is None:
            self.out.append(data)

    def text(self):
        t = "".join(self.out)
        t = re.sub(r"[ \t]+", " ", t)
        t = re.sub(r" *\n *", "\n", t)
        return t


def html_to_text(raw: str) -> str:
    p = _HTMLText()
    p.feed(raw)
    p.close()
    return p.text()


_RST_ROLE = re.compile(r":[a-zA-Z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_DIRECTIVE = re.compile(r"^\s*\.\. [a-zA-Z:-]+::.*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^*+#\"'`])\1{3,}\s*$")


def rst_to_text(raw: str) -> str:
    out = []
    for ln in raw.split("\n"):
        if _RST_UNDERLINE.match(ln):
            continue
        if _RST_DIRECTIVE.match(ln):
            # keep the argument of titles/notes etc., drop the directive marker itself
            arg = ln.split("::", 1)[1].strip()
            if arg and not arg.startswith(":"):
                out.append(arg)
            continue
        if re.match(r"^\s+:[a-zA-Z-]+:", ln):  # directive options
            continue
        if ln.startswith(".. "):  # comments, labels (.. _name:), SPDX lines
            continue
        ln = _RST_ROLE.sub(r"\1", ln)
        ln = ln.replace("``", "")
        out.append(ln)
    return "\n".join(out)


def pod_to_text(raw: str) -> str:
    out = []
    skipping = False
    for ln in raw.split("\n"):
        if ln.startswith("=begin") or ln.startswith("=for"):
            skipping = ln.startswith("=begin")
            continue
        if ln.startswith("=end"):
            skipping = False
            continue
        if skipping:
            continue
        if ln.startswith("=head") or ln.startswith("=item"):
            out.append(ln.split(None, 1)[1] if " " in ln else "")
            continue
        if ln.startswith("="):
            continue
        # formatting codes: B<x> I<x> C<x> L<x> F<x> S<x> E<x> (also doubled angle brackets)
        for _ in range(3):
            ln = re.sub(r"[BICFSLXZ]<<+\s(.*?)\s>>+", r"\1", ln)
            ln = re.sub(r"L<([^|>]*)\|[^>]*>", r"\1", ln)
            ln = re.sub(r"[BICFSLXZ]<([^<>]*)>", r"\1", ln)
        ln = re.sub(r"E<lt>", "<", ln)
        ln = re.sub(r"E<gt>", ">", ln)
        ln = re.sub(r"E<[^>]*>", "", ln)
        out.append(ln)
    return "\n".join(out)


def read(path):
    opener = gzip.open if path.endswith(".gz") or path.endswith(".dz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


# ---------------------------------------------------------------------------------- extractors
def src_python_docs(root):
    base = os.path.join(root, "usr/share/doc/python3.11/html/_sources")
    for p in sorted(glob.glob(os.path.join(base, "**/*.txt"), recursive=True)):
        rel = os.path.relpath(p, base)
        if rel.startswith("whatsnew/changelog") or rel.startswith("license"):
            continue  # the changelog is a bug-number list; the licence texts are not prose we want
        yield rel, rst_to_text(read(p))


def src_fortunes(root):
    base = os.path.join(root, "usr/share/games/fortunes")
    for p in sorted(glob.glob(os.path.join(base, "*"))):
        if os.path.isdir(p) or "." in os.path.basename(p):
            continue  # *.dat index files, *.u8 symlinks, off/ directory
        for i, cookie in enumerate(read(p).split("\n%\n")):
            yield f"{os.path.basename(p)}#{i}", cookie


def _html_tree(base, pattern="**/*.html"):
    for p in sorted(glob.glob(os.path.join(base, pattern), recursive=True)):
        yield os.path.relpath(p, base), html_to_text(read(p))


def src_debian_handbook(root):
    yield from _html_tree(os.path.join(root, "usr/share/doc/debian-handbook/html/en-US"), "*.html")


def src_debian_reference(root):
    p = os.path.join(root, "usr/share/debian-reference/debian-reference.en.txt.gz")
    if os.path.exists(p):
        yield "debian-reference.en.txt", read(p)


def src_jargon(root):
    p = os.path.join(root, "usr/share/doc/jargon-text/jargon.txt.gz")
    if os.path.exists(p):
        yield "jargon.txt", read(p)


def src_devil(root):
    p = os.path.join(root, "usr/share/dictd/devil.dict.dz")
    if os.path.exists(p):
        yield "devil.dict", read(p)


def src_perl_docs(root):
    for p in sorted(glob.glob(os.path.join(root, "usr/share/perl/*/pod/*.pod"))):
        name = os.path.basename(p)
        if re.match(r"perl\d+delta\.pod|perl5\d+delta\.pod|perlhist\.pod", name):
            continue  # release notes: lists of changes, not prose
        yield name, pod_to_text(read(p))


def src_postgresql_docs(root):
    yield from _html_tree(os.path.join(root, "usr/share/doc/postgresql-doc-15/html"), "*.html")


def src_linux_docs(root):
    base = sorted(glob.glob(os.path.join(root, "usr/share/doc/linux-doc-*/Documentation")))
    for b in base[-1:]:
        for p in sorted(glob.glob(os.path.join(b, "**/*.rst.gz"), recursive=True)):
            rel = os.path.relpath(p, b)
            if rel.startswith(("translations/", "ABI/", "devicetree/bindings/")):
                continue  # other languages; ABI and DT-binding files are terse field lists
            yield rel, rst_to_text(read(p))


EXTRACTORS = {
    "python-docs": src_python_docs, "fortunes": src_fortunes, "debian-handbook": src_debian_handbook,
    "debian-reference": src_debian_reference, "jargon": src_jargon, "devil": src_devil,
    "perl-docs": src_perl_docs, "postgresql-docs": src_postgresql_docs, "linux-docs": src_linux_docs,
}


# ---------------------------------------------------------------------------------------- main
def pieces(text, max_chars):
    """Cut ``text`` at paragraph boundaries into pieces of at most ``max_chars`` (about)."""
    if len(text) <= max_chars:
        return [text]
    out, cur, size = [], [], 0
    for para in text.split("\n\n"):
        if cur and size + len(para) > max_chars:
            out.append("\n\n".join(cur))
            cur, size = [], 0
        cur.append(para)
        size += len(para) + 2
    if cur:
        out.append("\n\n".join(cur))
    return out


def is_val(source, key, idx, frac):
    h = hashlib.sha256(f"{source}:{key}:{idx}".encode("utf-8")).hexdigest()
    return int(h[:8], 16) < frac * 2 ** 32


def build(out_dir, sources, root="/", val_fraction=0.02, max_doc_chars=20000, min_doc_chars=20):
    os.makedirs(out_dir, exist_ok=True)
    files = {s: open(os.path.join(out_dir, f"{s}.txt.tmp"), "w", encoding="utf-8") for s in ("train", "val")}
    manifest = {"format": "documents separated by a line holding only \\x1e", "val_fraction": val_fraction,
                "max_doc_chars": max_doc_chars, "sources": {}}
    totals = {"train": [0, 0], "val": [0, 0]}
    for name in sources:
        counts = {"train": [0, 0], "val": [0, 0]}
        for key, raw in EXTRACTORS[name](root):
            text = normalize(raw)
            if len(text) < min_doc_chars:
                continue
            for i, piece in enumerate(pieces(text, max_doc_chars)):
                piece = piece.strip()
                if len(piece) < min_doc_chars:
                    continue
                split = "val" if is_val(name, key, i, val_fraction) else "train"
                files[split].write(piece + "\n" + DOC_SEP + "\n")
                counts[split][0] += 1
                counts[split][1] += len(piece.encode("utf-8"))
        if counts["train"][0] + counts["val"][0] == 0:
            print(f"warning: source {name!r} gave no text (package not installed?)", file=sys.stderr)
            continue
        title, licence, package = SOURCES[name]
        manifest["sources"][name] = {"title": title, "licence": licence, "debian_package": package,
                                     "train_docs": counts["train"][0], "train_bytes": counts["train"][1],
                                     "val_docs": counts["val"][0], "val_bytes": counts["val"][1]}
        for s in totals:
            totals[s][0] += counts[s][0]
            totals[s][1] += counts[s][1]
        print(f"{name:18s} train {counts['train'][0]:7d} docs {counts['train'][1] / 1e6:8.2f} MB   "
              f"val {counts['val'][0]:5d} docs {counts['val'][1] / 1e6:6.2f} MB", file=sys.stderr)
    for s, f in files.items():
        f.close()
        os.replace(os.path.join(out_dir, f"{s}.txt.tmp"), os.path.join(out_dir, f"{s}.txt"))
        with open(os.path.join(out_dir, f"{s}.txt"), "rb") as fh:
            manifest[f"{s}_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    manifest["train_docs"], manifest["train_bytes"] = totals["train"]
    manifest["val_docs"], manifest["val_bytes"] = totals["val"]
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--root", default="/", help="file-system root the packages are installed under")
    ap.add_argument("--sources", default=",".join(EXTRACTORS), help="comma-separated subset of: " + ", ".join(EXTRACTORS))
    ap.add_argument("--val-fraction", type=float, default=0.02)
    ap.add_argument("--max-doc-chars", type=int, default=20000)
    a = ap.parse_args(argv)
    srcs = [s.strip() for s in a.sources.split(",") if s.strip()]
    bad = [s for s in srcs if s not in EXTRACTORS]
    if bad:
        ap.error(f"unknown source(s): {bad}")
    m = build(a.out, srcs, a.root, a.val_fraction, a.max_doc_chars)
    print(f"train: {m['train_docs']} docs, {m['train_bytes']} bytes; val: {m['val_docs']} docs, "
          f"{m['val_bytes']} bytes -> {a.out}")


if __name__ == "__main__":
    main()
