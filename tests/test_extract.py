"""Code extraction rules (vgrout.env.extract): one named test per pinned decision."""

from __future__ import annotations

from vgrout.env.extract import extract_code, fenced_blocks, strip_thinking

CODE = "class Solution:\n    def f(self, x):\n        return x + 1"


def fence(code: str, info: str = "python", ticks: str = "```") -> str:
    return f"{ticks}{info}\n{code}\n{ticks}"


def test_python_fence_extracted():
    assert extract_code("Here:\n" + fence(CODE) + "\nDone.") == CODE


def test_capitalised_python_fence_extracted():
    assert extract_code(fence(CODE, "Python")) == CODE


def test_bare_fence_extracted():
    assert extract_code(fence(CODE, "")) == CODE


def test_py_python3_py3_fences_extracted():
    for info in ("py", "python3", "py3", "PY"):
        assert extract_code(fence(CODE, info)) == CODE, info


def test_space_between_fence_and_tag_extracted():
    assert extract_code(fence(CODE, " python")) == CODE


def test_info_string_with_attributes_extracted():
    assert extract_code(fence(CODE, "python {.line-numbers}")) == CODE


def test_crlf_fences_extracted():
    response = "Answer:\r\n```python\r\n" + CODE.replace("\n", "\r\n") + "\r\n```\r\n"
    assert extract_code(response) == CODE


def test_lone_cr_line_endings_extracted():
    response = "```python\r" + CODE.replace("\n", "\r") + "\r```"
    assert extract_code(response) == CODE


def test_several_blocks_concatenated_in_order_with_blank_line():
    usage = "print(Solution().f(1))"
    response = fence(CODE) + "\nExample usage:\n" + fence(usage)
    assert extract_code(response) == CODE + "\n\n" + usage


def test_unterminated_final_block_is_kept():
    response = "Sure.\n```python\n" + CODE + "\n    # cut off by max len"
    assert extract_code(response) == CODE + "\n    # cut off by max len"


def test_empty_block_is_unformatted():
    assert extract_code("```python\n\n```") is None
    assert extract_code("```python\n   \n\n```") is None


def test_empty_block_dropped_when_another_has_code():
    assert extract_code("```python\n```\ntext\n" + fence(CODE)) == CODE


def test_no_fence_is_unformatted_even_if_code_present():
    assert extract_code(CODE) is None
    assert extract_code("") is None


def test_bash_block_before_python_does_not_desynchronise():
    response = (
        "Run it with:\n```bash\npython sol.py\n```\nThe code (do not run prose):\n"
        + fence(CODE)
        + "\nThanks."
    )
    assert extract_code(response) == CODE


def test_text_and_output_blocks_are_ignored():
    response = (
        fence("Input: 3\nOutput: 4", "text") + "\n" + fence(CODE) + "\n" + fence("4", "output")
    )
    assert extract_code(response) == CODE


def test_only_non_python_blocks_is_unformatted():
    assert extract_code(fence("ls -la", "bash") + fence('{"a": 1}', "json")) is None


def test_triple_backticks_inside_string_literal_not_at_line_start_are_harmless():
    code = 'FENCE = "```"\nclass Solution:\n    pass'
    assert extract_code(fence(code)) == code


def test_triple_backticks_at_line_start_inside_code_close_the_block():
    # pinned limitation: a line that starts with ``` closes the block, as Markdown shows it
    code = 's = """\n```\n"""'
    assert extract_code(fence(code)) == 's = """'


def test_four_backtick_fence_may_contain_triple_backtick_lines():
    code = 's = """\n```\n"""\nprint(s)'
    assert extract_code(fence(code, "python", "````")) == code


def test_tilde_fence_extracted():
    assert extract_code(fence(CODE, "python", "~~~")) == CODE


def test_inline_triple_backticks_are_not_a_fence():
    response = "Use ```print(1)``` inline.\n" + fence(CODE)
    assert extract_code(response) == CODE


def test_indented_fence_in_markdown_list_is_dedented():
    indented = "\n".join("   " + line for line in fence(CODE).split("\n"))
    assert extract_code("1. The code:\n" + indented) == CODE


def test_code_inside_think_is_ignored():
    draft = fence("def run_tests():\n    pass")
    response = f"<think>\nmaybe a hack:\n{draft}\n</think>\n" + fence(CODE)
    assert extract_code(response) == CODE


def test_only_code_inside_think_is_unformatted():
    assert extract_code("<think>\n" + fence(CODE) + "\n</think>\nI could not solve it.") is None


def test_unclosed_think_drops_everything_after_it():
    assert extract_code(fence(CODE) + "\n<think>\n" + fence("x = 1")) == CODE


def test_orphan_closing_think_drops_the_reasoning_before_it():
    # Qwen3's template puts <think> in the prompt: the completion starts inside the reasoning
    response = "let me draft\n" + fence("x = 1") + "\n</think>\n\n" + fence(CODE)
    assert extract_code(response) == CODE


def test_strip_thinking_keeps_text_without_tags():
    assert strip_thinking("plain") == "plain"


def test_fenced_blocks_reports_info_strings():
    blocks = fenced_blocks(fence("a", "bash") + "\n" + fence("b", "Python"))
    assert blocks == [("bash", "a"), ("Python", "b")]


def test_trailing_whitespace_and_blank_lines_stripped_but_indentation_kept():
    code = "    x = 1\n"  # a block that is wholly indented is dedented, not broken
    assert extract_code("```python\n\n" + code + "\n\n```") == "x = 1"
