"""What the documentation points at exists: every repository path named in README.md, docs/*.md and the
package's docstrings and comments, and every relative link (with its #anchor) of the Markdown pages."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = sorted((REPO / "detector").rglob("*.py"))

# a path into one of these folders, not inside a longer path (../shared/data/tests/x) or word (my_tests/x);
# it ends before a space, quote, bracket or comma; a final full stop or colon is the sentence's
PATH = re.compile(r"(?<![\w./$-])((?:tests|docs|benchmarks|tools|weights|detector)/[\w./*<>{}:-]*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def named_paths(text: str) -> set[str]:
    """Repository paths in ``text``; a ``::test_name`` suffix is dropped; globs and placeholders
    (``*``, ``<name>``, ``{a,b}``) are left out, as they name no one file."""
    found = set()
    for match in PATH.finditer(text):
        path = match.group(1).split("::")[0].rstrip(".:")
        if not any(ch in path for ch in "*<>{}") and "/" in path:
            found.add(path)
    return found


def python_prose(path: Path) -> str:
    """The docstrings and comments of a module: its string literals and comment tokens (strings that are
    not docstrings, such as defaults and messages, name real paths too)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return "\n".join(t.string for t in tokens if t.type in (tokenize.STRING, tokenize.COMMENT))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def missing_paths(text: str) -> list[str]:
    return sorted(p for p in named_paths(text) if not (REPO / p).exists())


def test_the_path_finder_finds_what_it_should():
    text = (
        "see tests/test_cli.py::test_help_reads_well, `docs/live.md`. (benchmarks/RESULTS.md) tools/nope.sh: "
        "weights/*.pt detector/<name>.py ../shared/data/tests/x runs/detector/y"
    )
    assert named_paths(text) == {"tests/test_cli.py", "docs/live.md", "benchmarks/RESULTS.md", "tools/nope.sh"}
    assert missing_paths(text) == ["tools/nope.sh"]  # a bogus path fails the tests below


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_paths_named_in_the_pages_exist(page):
    assert missing_paths(page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_of_the_pages_lead_somewhere(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []


def test_paths_named_in_docstrings_and_comments_exist():
    missing = {str(f.relative_to(REPO)): missing_paths(python_prose(f)) for f in SOURCES}
    assert {f: paths for f, paths in missing.items() if paths} == {}
