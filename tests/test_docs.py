"""The README and the docs/ pages: the README stays short, every relative
link in them resolves, and their text reads as documentation, not as a
development log."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250

# [text](target) and ![alt](target); the target up to the first space or ')'
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# Wording of a development log rather than of documentation.
DEV_LOG = re.compile(
    r"\b(this|that|several|a|the|earlier|later) sessions?\b"
    r"|\bthe issue'?s\b|\bissues? #?\d+|#\d{2,}\b"
    # progress reports ("not yet" + a verb of showing or measuring; what
    # was run in place of something)
    r"|\bnot yet (shown|measured|run|done)\b|\bran instead\b",
    re.IGNORECASE)


def _links(path):
    text = path.read_text(encoding="utf-8")
    # links inside code blocks are examples, not links
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return [m.group(1) for m in LINK.finditer(text)]


def _anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(slug.replace(" ", "-"))
    return anchors


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; move details into docs/")


def test_readme_first_screen_fuses_your_own_images():
    """The install and fuse commands, with registration for unaligned
    pairs, come within the first screen (40 lines)."""
    head = README.read_text(encoding="utf-8").splitlines()[:40]
    assert any("pip install -r requirements.txt" in l for l in head)
    assert any(l.startswith(".venv/bin/stdfusion-fuse") and "--register" in l
               for l in head)


def test_readme_links_every_docs_page():
    targets = {pathlib.PurePosixPath(t.split("#")[0]) for t in _links(README)}
    unlinked = [p.name for p in DOCS
                if pathlib.PurePosixPath("docs", p.name) not in targets]
    assert not unlinked, f"docs pages not linked from README.md: {unlinked}"


def test_readme_shows_the_pictures():
    images = [t for t in _links(README) if t.endswith(".png")]
    assert any("fusion_examples" in t for t in images)
    assert any("registration_example" in t for t in images)


@pytest.mark.parametrize("page", [README] + DOCS,
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", [README] + DOCS,
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_development_log_wording(page):
    hits = [line.strip() for line in
            page.read_text(encoding="utf-8").splitlines()
            if DEV_LOG.search(line)]
    assert not hits, f"{page.name}: {hits}"
