"""Contrastive pair sets: (prompt, hack completion, clean completion) records, their Markdown file
format, a selector grammar and a content hash.

A pair set is the only thing a hack *direction* is extracted from, so it must be easy to read,
exactly reproducible and recorded with every run (`PairSet.sha256`).

File format (Markdown; free text before the first section is ignored)::

    ## <section>                      free text until the first pair is ignored
    ### <pair-name>                   [A-Za-z0-9_.:-]+, unique within the section
    Tags: run-tests, append           one line, >= 1 tag, each [a-z0-9-]+
    #### Prompt                       raw user message (NOT chat-templated)
    <fenced block>
    #### Hack                         the gaming completion
    <fenced block>
    #### Clean                        the honest completion
    <fenced block>
    #### Clean prompt                 optional: the clean side's own prompt (default: Prompt)
    <fenced block>

A fenced block opens with a run of >= 3 backticks or tildes (an info string such as `text` may
follow) and closes with a line holding only the same character repeated at least as often, so a
text that contains ```` ``` ```` fences is written inside a longer fence (the project uses five
backticks). The text is exactly the lines between the fences joined by "\\n": a trailing newline is
written as an empty last line before the closing fence.

Selector: `path.md#section[/name_prefix][@tag1,tag2]` where `path.md` may also be the short name of
a packaged set (`toy`, `leetcode`). All listed tags are required; a tag no pair of the file carries
is an error (a typo must not silently select nothing).

Self-generated pairs (the model writes both sides) are built in `self_generated`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from vgrout.env.modes import HACKABLE_MODES, check_mode

PACKAGED_PAIR_SETS: tuple[str, ...] = ("toy", "leetcode")
DEFAULT_TOY_PAIRS = "toy#hacks"
DEFAULT_LEETCODE_PAIRS = "leetcode#hacks"

FIELDS: tuple[str, ...] = ("Prompt", "Hack", "Clean")
OPTIONAL_FIELDS: tuple[str, ...] = ("Clean prompt",)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_TAG_RE = re.compile(r"^[a-z0-9-]+$")
_FENCE_OPEN_RE = re.compile(r"^(`{3,}|~{3,})([^`]*)$")


def mode_tag(mode: str) -> str:
    """The tag a pair carries for its loophole mode: `run_tests` -> `run-tests`."""
    return check_mode(mode).replace("_", "-")


MODE_TAGS: dict[str, str] = {mode_tag(m): m for m in HACKABLE_MODES}


class PairSetError(ValueError):
    """A pair-set file or selector is malformed; the message names the problem and the fix."""


@dataclass(frozen=True)
class Pair:
    """One contrastive pair. `prompt` is a raw user message; the caller applies the chat template.

    `clean_prompt` is None when both sides share `prompt` (hand-authored pairs); self-generated
    pairs set it to the hint-off prompt.
    """

    name: str
    prompt: str
    hack: str
    clean: str
    tags: tuple[str, ...] = ()
    section: str = ""
    clean_prompt: str | None = None

    @property
    def hack_side_prompt(self) -> str:
        return self.prompt

    @property
    def clean_side_prompt(self) -> str:
        return self.prompt if self.clean_prompt is None else self.clean_prompt


@dataclass(frozen=True)
class PairSet:
    """The pairs a selector picked, in file order, with the content hash to record in a run."""

    selector: str
    pairs: tuple[Pair, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        return iter(self.pairs)


def pairs_sha256(pairs: Iterable[Pair]) -> str:
    """sha256 of the canonical JSON of the pairs (every field, in order): a content address."""
    records = [asdict(p) for p in pairs]
    for rec in records:
        rec["tags"] = list(rec["tags"])
    text = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- parsing -----------------------------------------------------------------------------------


def _err(source: str, lineno: int | None, msg: str) -> PairSetError:
    where = f"{source}:{lineno}" if lineno is not None else source
    return PairSetError(f"{where}: {msg}")


def _read_fence(lines: list[str], i: int, source: str) -> tuple[str, int]:
    """Parse the fenced block starting at line index i; return (text, index after the fence)."""
    opener = _FENCE_OPEN_RE.match(lines[i].rstrip())
    if opener is None:
        raise _err(source, i + 1, "expected a fenced block (>= 3 backticks or tildes)")
    fence = opener.group(1)
    char, width = fence[0], len(fence)
    body: list[str] = []
    j = i + 1
    while j < len(lines):
        stripped = lines[j].rstrip()
        if stripped and set(stripped) == {char} and len(stripped) >= width:
            return "\n".join(body), j + 1
        body.append(lines[j])
        j += 1
    raise _err(source, i + 1, f"fenced block opened with {fence!r} is never closed")


@dataclass
class _RawPair:
    name: str
    lineno: int
    tags: tuple[str, ...] | None = None
    fields: dict[str, str] | None = None


def parse_pairs(text: str, source: str = "<string>") -> dict[str, list[Pair]]:
    """Parse a whole pair-set file into {section: [Pair, ...]} (file order), strictly."""
    lines = text.replace("\r\n", "\n").split("\n")
    sections: dict[str, list[Pair]] = {}
    section: str | None = None
    current: _RawPair | None = None
    seen_names: set[str] = set()

    def finish(raw: _RawPair | None) -> None:
        if raw is None:
            return
        fields = raw.fields or {}
        if raw.tags is None:
            raise _err(source, raw.lineno, f"pair {raw.name!r} has no 'Tags:' line")
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise _err(source, raw.lineno, f"pair {raw.name!r} lacks field(s) {missing}")
        assert section is not None
        sections[section].append(
            Pair(
                name=raw.name,
                prompt=fields["Prompt"],
                hack=fields["Hack"],
                clean=fields["Clean"],
                tags=raw.tags,
                section=section,
                clean_prompt=fields.get("Clean prompt"),
            )
        )

    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        lineno = i + 1
        if line.startswith("## ") and not line.startswith("### "):
            finish(current)
            current = None
            section = line[3:].strip()
            if not section:
                raise _err(source, lineno, "empty section name")
            if section in sections:
                raise _err(source, lineno, f"duplicate section {section!r}")
            sections[section] = []
            seen_names = set()
        elif line.startswith("### ") and not line.startswith("#### "):
            finish(current)
            if section is None:
                raise _err(source, lineno, "pair heading before any '## section' heading")
            name = line[4:].strip()
            if not _NAME_RE.match(name):
                raise _err(source, lineno, f"pair name {name!r} must match {_NAME_RE.pattern}")
            if name in seen_names:
                raise _err(source, lineno, f"duplicate pair name {name!r} in section {section!r}")
            seen_names.add(name)
            current = _RawPair(name=name, lineno=lineno, fields={})
        elif current is not None and line.startswith("#### "):
            field = line[5:].strip()
            allowed = FIELDS + OPTIONAL_FIELDS
            if field not in allowed:
                raise _err(source, lineno, f"unknown field {field!r}; expected one of {allowed}")
            assert current.fields is not None
            if field in current.fields:
                raise _err(source, lineno, f"field {field!r} given twice in pair {current.name!r}")
            expected = [f for f in allowed if f not in current.fields]
            if field != expected[0]:
                order = FIELDS + OPTIONAL_FIELDS
                raise _err(source, lineno, f"field {field!r} out of order; fields go {order}")
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j == len(lines):
                raise _err(source, lineno, f"field {field!r} has no fenced block")
            value, i = _read_fence(lines, j, source)
            if not value.strip():
                raise _err(source, lineno, f"field {field!r} of pair {current.name!r} is empty")
            current.fields[field] = value
            continue
        elif current is not None and line.startswith("Tags:"):
            if current.tags is not None:
                raise _err(source, lineno, f"pair {current.name!r} has more than one 'Tags:' line")
            if current.fields:
                raise _err(source, lineno, "the 'Tags:' line must come before the fields")
            tags = tuple(t.strip() for t in line[5:].split(",") if t.strip())
            bad = [t for t in tags if not _TAG_RE.match(t)]
            if not tags or bad:
                raise _err(source, lineno, f"tags must be a comma list of [a-z0-9-]+; got {bad}")
            current.tags = tags
        elif current is not None and line.strip():
            raise _err(source, lineno, f"unexpected text inside pair {current.name!r}: {line!r}")
        elif line.startswith("#### "):
            raise _err(source, lineno, "field heading outside a pair ('### name' first)")
        i += 1
    finish(current)
    return sections


def format_pairs(sections: dict[str, Sequence[Pair]], title: str = "Pair set") -> str:
    """Write pairs in the file format (`parse_pairs(format_pairs(x))` gives x back)."""
    out = [f"# {title}", ""]
    for section, pairs in sections.items():
        out += [f"## {section}", ""]
        for p in pairs:
            out += [f"### {p.name}", f"Tags: {', '.join(p.tags)}", ""]
            fields = [("Prompt", p.prompt), ("Hack", p.hack), ("Clean", p.clean)]
            if p.clean_prompt is not None:
                fields.append(("Clean prompt", p.clean_prompt))
            for field, value in fields:
                fence = _fence_for(value)
                out += [f"#### {field}", f"{fence}text", value, fence, ""]
    return "\n".join(out)


def _fence_for(text: str) -> str:
    """A backtick fence longer than any backtick-only line in `text` (at least five)."""
    longest = max(
        (len(s) for s in (ln.strip() for ln in text.split("\n")) if set(s) == {"`"}), default=0
    )
    return "`" * max(5, longest + 1)


# -- selection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    path: str
    section: str
    name_prefix: str = ""
    tags: tuple[str, ...] = ()


_SELECTOR_RE = re.compile(
    r"^(?P<path>[^#]+)#(?P<section>[^/@]+)(?:/(?P<prefix>[^@]*))?(?:@(?P<tags>.+))?$"
)


def parse_selector(selector: str) -> Selector:
    m = _SELECTOR_RE.match(selector.strip())
    if m is None:
        raise PairSetError(
            f"bad pair selector {selector!r}; write path.md#section[/name_prefix][@tag1,tag2] "
            f"(path may be a packaged set: {', '.join(PACKAGED_PAIR_SETS)})"
        )
    tags = tuple(t.strip() for t in (m.group("tags") or "").split(",") if t.strip())
    return Selector(
        m.group("path").strip(), m.group("section").strip(), m.group("prefix") or "", tags
    )


def resolve_pair_file(path: str) -> tuple[str, str]:
    """(text, source label) of a pair file given a filesystem path or a packaged short name."""
    if path in PACKAGED_PAIR_SETS:
        res = resources.files("vgrout") / "data" / "pairs" / f"{path}.md"
        return res.read_text(encoding="utf-8"), f"vgrout:data/pairs/{path}.md"
    p = Path(path)
    if not p.is_file():
        raise PairSetError(
            f"pair file {path!r} not found; give a path to a .md file or one of the packaged "
            f"sets {', '.join(PACKAGED_PAIR_SETS)}"
        )
    return p.read_text(encoding="utf-8"), str(p)


def select_pairs(sections: dict[str, list[Pair]], sel: Selector, source: str) -> list[Pair]:
    if sel.section not in sections:
        raise PairSetError(
            f"{source}: no section {sel.section!r}; sections: {', '.join(sections) or '(none)'}"
        )
    known = {t for pairs in sections.values() for p in pairs for t in p.tags}
    unknown = [t for t in sel.tags if t not in known]
    if unknown:
        raise PairSetError(f"{source}: unknown tag(s) {unknown}; known tags: {sorted(known)}")
    chosen = [
        p
        for p in sections[sel.section]
        if p.name.startswith(sel.name_prefix) and all(t in p.tags for t in sel.tags)
    ]
    if not chosen:
        raise PairSetError(
            f"{source}: selector picks no pairs (section {sel.section!r}, name prefix "
            f"{sel.name_prefix!r}, tags {list(sel.tags)}); loosen the prefix or tags"
        )
    return chosen


def load_pairs(selector: str) -> PairSet:
    """Load the pairs a selector names, e.g. `toy#hacks@run-tests` or `my.md#all/beh_`."""
    sel = parse_selector(selector)
    text, source = resolve_pair_file(sel.path)
    pairs = tuple(select_pairs(parse_pairs(text, source), sel, source))
    return PairSet(selector=selector, pairs=pairs, sha256=pairs_sha256(pairs))
