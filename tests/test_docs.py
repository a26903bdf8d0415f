"""The documentation holds together: links resolve, shown commands exist, the README stays short.

Fast: builds the command-line parsers in-process (no Keras or TensorFlow import).
"""

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_BYTES = 12 * 1024
DOC_FILES = [README] + sorted((ROOT / "docs").rglob("*.md"))

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _split_fences(text):
    """(prose lines, code blocks): lines outside fenced blocks, and each fenced block's lines."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if block is None:
                block = []
            else:
                blocks.append(block)
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    return prose, blocks


def _slug(heading):
    """GitHub's anchor of a heading: the rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path):
    prose, _ = _split_fences(path.read_text(encoding="utf-8"))
    seen, anchors = {}, set()
    for line in prose:
        match = HEADING.match(line)
        if match:
            slug = _slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path):
    prose, _ = _split_fences(path.read_text(encoding="utf-8"))
    for line in prose:
        yield from LINK.findall(INLINE_CODE.sub("", line))


def _is_external(target):
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) is not None


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in _links(doc):
        if _is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_docs_pages_exist():
    assert (ROOT / "docs" / "index.md").is_file()
    assert len(DOC_FILES) > 5


# --- commands shown in the README -------------------------------------------------------------


@pytest.fixture(scope="module")
def parsers(monkeypatch_module):
    monkeypatch_module.setenv("COLUMNS", "10000")  # no wrapped help lines
    from autoencoder3d.cli import main

    return {
        "autoencoder3d": main.build_parser("autoencoder3d", main.AUTOENCODER3D_COMMANDS),
        "edss3d": main.build_parser("edss3d", main.EDSS3D_COMMANDS),
    }


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return None


def _shown_commands(path):
    """Every ``autoencoder3d ...`` / ``edss3d ...`` command in the file's fenced code blocks, as tokens."""
    _, blocks = _split_fences(path.read_text(encoding="utf-8"))
    for block in blocks:
        for line in block:
            line = re.sub(r"\s#.*$", "", line)  # a shell comment
            for part in re.split(r"&&|\|\||;|\|", line):
                try:
                    tokens = shlex.split(part)
                except ValueError:
                    continue
                if tokens and tokens[0] in ("autoencoder3d", "edss3d"):
                    yield tokens


def _check_command(parsers, tokens):
    """Problems with one shown command: an unknown subcommand, or an option its --help does not list."""
    program, rest = tokens[0], tokens[1:]
    if program == "autoencoder3d" and rest[:1] == ["edss3d"]:
        program, rest = "edss3d", rest[1:]
    parser, path = parsers[program], [program]
    while (choices := _subcommands(parser)) is not None:
        words = [t for t in rest if not t.startswith("-")]
        if not words:
            return [f"{' '.join(tokens)}: no subcommand of '{' '.join(path)}'"]
        if words[0] not in choices:
            return [f"{' '.join(tokens)}: '{words[0]}' is not a subcommand of '{' '.join(path)}'"]
        rest = rest[rest.index(words[0]) + 1:]
        parser = choices[words[0]]
        path.append(words[0])
    help_text = parser.format_help()
    problems = []
    for token in rest:
        if token.startswith("--") and len(token) > 2:
            option = token.split("=", 1)[0]
            if not re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", help_text):
                problems.append(f"{' '.join(tokens)}: '{' '.join(path)} --help' lists no {option}")
    return problems


def test_readme_commands_exist(parsers):
    commands = list(_shown_commands(README))
    assert len(commands) >= 5, "the README shows too few commands to be a quickstart"
    problems = [p for tokens in commands for p in _check_command(parsers, tokens)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOC_FILES[1:], ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_commands_exist(parsers, doc):
    problems = [p for tokens in _shown_commands(doc) for p in _check_command(parsers, tokens)]
    assert not problems, "\n".join(problems)


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; at most {README_MAX_BYTES} (move detail to docs/)"
