"""Every relative link in README.md and docs/ points at a file that exists, and every #anchor at a
heading that exists. Links inside code (fenced blocks, inline spans) are not links and are ignored;
http(s) and mailto links are not checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = ("http://", "https://", "mailto:")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")


@dataclass(frozen=True)
class Link:
    source: Path  # the Markdown file that holds the link
    line: int
    target: str  # as written, fragment included

    def where(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}: ({self.target})"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks, inline code blanked out."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        opening = FENCE.match(text)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
        else:
            lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link markup reduced to its text, lower-case, punctuation
    dropped except '-' and '_', each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor the headings of `path` define; a repeated heading gets -1, -2, ... as on
    GitHub. Headings are read from the raw lines (code spans included) but not from fences."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    raw = path.read_text(encoding="utf-8").splitlines()
    for number, _ in prose_lines(path):
        match = HEADING.match(raw[number - 1])
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links() -> list[Link]:
    return [
        Link(path, number, match.group(1))
        for path in markdown_files()
        for number, text in prose_lines(path)
        for match in LINK.finditer(text)
        if not match.group(1).startswith(EXTERNAL)
    ]


def split(link: Link) -> tuple[Path, str]:
    """The file a link points at (its own file for a pure #anchor) and its fragment, or ''."""
    target, _, fragment = link.target.partition("#")
    path = link.source if not target else (link.source.parent / unquote(target)).resolve()
    return path, unquote(fragment)


def test_the_docs_have_links_to_check():
    """Guards against a parser change that finds nothing and so passes for nothing."""
    assert (ROOT / "docs").is_dir(), "docs/ is missing"
    assert len(relative_links()) >= 20, f"only {len(relative_links())} relative links found"


def test_every_relative_link_points_at_an_existing_file():
    broken = [
        f"{link.where()}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
        f"does not exist"
        for link in relative_links()
        for path, _ in [split(link)]
        if not path.exists()
    ]
    if broken:
        pytest.fail("links to missing files:\n  " + "\n  ".join(broken), pytrace=False)


def test_every_anchor_is_a_heading_of_its_target():
    broken = []
    cache: dict[Path, set[str]] = {}
    for link in relative_links():
        path, fragment = split(link)
        if not fragment or path.suffix != ".md" or not path.is_file():
            continue
        if fragment not in cache.setdefault(path, anchors(path)):
            broken.append(
                f"{link.where()}: no heading with anchor #{fragment} in {path.relative_to(ROOT)}"
            )
    if broken:
        pytest.fail("links to missing anchors:\n  " + "\n  ".join(broken), pytrace=False)


@pytest.mark.parametrize(
    "heading, expected",
    [
        ("Options of petit run", "options-of-petit-run"),
        ("petit ctl and the control socket", "petit-ctl-and-the-control-socket"),
        ("Cross-job dependencies", "cross-job-dependencies"),
        ("A five-minute tour", "a-five-minute-tour"),
        ("`make lint` and `ruff`", "make-lint-and-ruff"),
        ("Keys: `max_concurrency`, `depends_on`", "keys-max_concurrency-depends_on"),
        ("See [the API](http-api.md) now", "see-the-api-now"),
    ],
)
def test_slug_follows_github_rules(heading, expected):
    assert slug(heading) == expected
