"""Code extraction: the Python program a raw model response submits.

The benchmark asks for code "in the following format: ```python\\n<code>\\n```". These rules decide,
deterministically and without running anything, which text of a response is its program. Each rule
is pinned by a named test in `tests/test_extract.py`.

Rules (in order):

1. Line endings. CRLF and lone CR become LF before anything else, so Windows-style fences work
   (upstream's regex demanded a bare LF right after the tag and found no code at all).
2. Thinking is not the answer. Text inside `<think>...</think>` is removed. An opening `<think>` that
   is never closed removes everything after it (the response was cut off while thinking). A closing
   `</think>` without an opener removes everything before it (chat templates such as Qwen3's put the
   opener in the prompt). Why: a reasoning trace holds drafts, rejected ideas and hack
   considerations; running them with the final answer would execute code the model did not submit
   (and duplicate definitions would silently override the answer). Upstream took them.
3. Fences are parsed line by line, CommonMark style. A fence line is optional indentation, then a
   run of >= 3 backticks (or >= 3 tildes), then an info string that contains no backtick. A block
   closes at the first later line made of the same fence character, at least as long as the opener,
   with nothing but whitespace after it. So a ```bash or ```text block is consumed whole and can
   never desynchronise the pairing of later fences (upstream's regex read the closing fence of a
   non-python block as an opener and could lose the real code), and a 4-backtick block may contain
   triple-backtick lines.
4. A block is Python when the first word of its info string, lowercased, is one of
   `python`, `python3`, `py`, `py3` or is empty (a bare fence). So ```Python, ```py, ```python3,
   "``` python" (space) and ```python {.class} all count; ```bash, ```text, ```json, ```output do not.
5. Each Python block is dedented (a fence indented inside a markdown list keeps its code valid) and
   stripped of leading and trailing blank lines. Empty blocks are dropped. All remaining blocks are
   joined in order with one blank line between them: a solution block followed by an "example usage"
   block runs both, as in the benchmark (not last-block-only).
6. An unterminated final block (a generation cut at max length) is kept up to the end of the text.
7. No Python block with content -> `None`: the response is unformatted (reward 0). Code that is not
   in a fence at all is not extracted: the format is part of the task.

Known limitation (pinned): a line *inside* Python code that itself starts with ``` (for example a
line of a multi-line string) closes the block, exactly as a Markdown renderer would show it.
Backticks that do not start a line (`s = "```"`) are harmless.
"""

from __future__ import annotations

import re
import textwrap

PYTHON_INFO_WORDS: frozenset[str] = frozenset({"", "python", "python3", "py", "py3"})

_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def strip_thinking(text: str) -> str:
    """Remove reasoning: `<think>...</think>` spans, an unclosed trailing `<think>`, and a leading
    span that ends with an orphan `</think>` (its opener was in the prompt)."""
    first_open = text.find("<think>")
    first_close = text.find("</think>")
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        text = text[first_close + len("</think>") :]
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    unclosed = text.find("<think>")
    return text if unclosed == -1 else text[:unclosed]


def _fence_line(line: str) -> tuple[str, str] | None:
    """(fence run, info string) if `line` opens or closes a fence, else None."""
    match = _FENCE.match(line)
    if match is None:
        return None
    fence, info = match.group("fence"), match.group("info")
    if fence[0] == "`" and "`" in info:
        return None  # inline code such as ```x``` is not a fence (CommonMark)
    return fence, info.strip()


def is_python_info(info: str) -> bool:
    words = info.split()
    first = words[0].lower() if words else ""
    return first in PYTHON_INFO_WORDS


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """All fenced blocks as (info string, body) in order; an unterminated last block is included."""
    blocks: list[tuple[str, str]] = []
    opener: tuple[str, str] | None = None
    body: list[str] = []
    for line in text.split("\n"):
        fence = _fence_line(line)
        if opener is None:
            if fence is not None:
                opener, body = fence, []
            continue
        closes = (
            fence is not None
            and fence[1] == ""
            and fence[0][0] == opener[0][0]
            and len(fence[0]) >= len(opener[0])
        )
        if closes:
            blocks.append((opener[1], "\n".join(body)))
            opener = None
        else:
            body.append(line)
    if opener is not None:
        blocks.append((opener[1], "\n".join(body)))
    return blocks


def _clean_block(body: str) -> str:
    return textwrap.dedent(body).strip("\n").rstrip()


def extract_code(response: str) -> str | None:
    """The program a response submits, or None when it contains no non-empty Python block."""
    text = strip_thinking(normalise_newlines(response))
    pieces = [_clean_block(body) for info, body in fenced_blocks(text) if is_python_info(info)]
    pieces = [p for p in pieces if p.strip()]
    return "\n\n".join(pieces) if pieces else None
