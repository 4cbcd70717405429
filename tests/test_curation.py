"""Curation: upstream's format checks, clean (dedup + name diversity) and the SMART rewrite."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import shared_data

from selfalign.curation import (
    CleanParams,
    FormatError,
    SmartParams,
    code_blocks,
    definition_names,
    joined_function_names,
    load_contamination,
    record_rng,
    remove_comment_lines,
    run_clean,
    run_sanitize,
    run_sft,
    shuffled_order,
    smart_rewrite,
    split_sections,
    strip_comments_in_blocks,
    write_parquet,
)
from selfalign.records import RecordError, read_jsonl

FENCE = "```"


def response(
    code: str = "def add_one(x):\n    # one more\n    return x + 1",
    tests: str = "assert add_one(1) == 2\nassert add_one(-1) == 0",
    *,
    reasoning: str = "Add one to the input.",
    explanation: str = "It returns x plus one.",
    tail: str = "",
) -> str:
    return (
        f"[Reasoning]\n{reasoning}\n\n[Implementation]\nHere it is:\n\n{FENCE}python\n{code}\n{FENCE}\n\n"
        f"[Explanation]\n{explanation}\n\n[Tests]\n{FENCE}python\n{tests}\n{FENCE}\n{tail}"
    )


def fewshot_responses() -> list[str]:
    text = (shared_data() / "upstream" / "self-ossinstruct-fewshot.txt").read_text()
    return [part.split("[Response]\n", 1)[1] for part in text.split("### Example ")[1:]]


# ------------------------------------------------------------------------------ format checks


def test_upstream_fewshot_responses_in_the_four_section_format_pass() -> None:
    passed = []
    for number, text in enumerate(fewshot_responses(), 1):
        try:
            sections = split_sections(text)
        except FormatError as exc:
            assert exc.reason == "format:tag_count", number  # the free-form examples
            continue
        passed.append(number)
        # the raw rewrite is a fixed point of the checks
        assert split_sections(sections.raw()) == sections
        assert sections.raw().startswith("[Reasoning]\n")
    assert passed == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (response().replace("[Explanation]", "[Explanation] [Explanation]"), "format:tag_count"),
        (response().replace("[Reasoning]", ""), "format:tag_count"),
        (
            "[Implementation]\nx\n[Reasoning]\ny\n[Explanation]\nz\n[Tests]\n```python\nassert 1\n```",
            "format:tag_order",
        ),
        (response().replace("```python\ndef", "```py\ndef"), "format:no_implementation_code"),
        (response(tail="```python\nassert True\n```\n"), "format:tests_not_one_block"),
        (response(tests="print(add_one(1))"), "format:tests_no_assert"),
        (response(tests="def check():\n    assert add_one(1) == 2"), "format:tests_only_definitions"),
    ],
)
def test_each_format_check_names_its_reason(text: str, reason: str) -> None:
    with pytest.raises(FormatError) as caught:
        split_sections(text)
    assert caught.value.reason == reason


def test_tests_are_cut_after_the_fence_and_before_a_slash_line() -> None:
    sections = split_sections(response(tail="These tests check it.\n"))
    assert sections.tests.endswith(FENCE)
    assert "These tests" not in sections.tests
    # a line starting with "/" (leaked markup) ends the tests where it starts
    sections = split_sections(response(tests="assert add_one(1) == 2\n//end"))
    assert "//end" not in sections.tests and "assert add_one(1) == 2" in sections.tests


def test_code_blocks_follow_upstream_fence_rules() -> None:
    text = "a\n```python\nx = 1\n```\nb\n```\nplain\n```\n```Python\ny = 2\n```\n```python\nunclosed"
    assert code_blocks(text) == ["x = 1", "plain", "y = 2"]
    assert code_blocks(text, "python") == ["x = 1", "y = 2"]  # tags compare case-insensitively


def test_release_comment_removal_drops_whole_comment_lines_only() -> None:
    text = (
        '```python\n# head\ndef f(x):\n    """Doc."""\n\n    # note\n    return x  # trailing\n```\n'
        "Text\n# kept outside\n```bash\n# also in other blocks\nls\n```\n"
    )
    assert remove_comment_lines(text) == (
        '```python\ndef f(x):\n    """Doc."""\n    return x  # trailing\n```\n'
        "Text\n# kept outside\n```bash\nls\n```\n"
    )


def test_comment_removal_keeps_fences_on_their_own_line() -> None:
    text = '```python\ndef f(x):\n    """Doc."""\n    # note\n    return x  # trailing\n```\n\nText # kept\n'
    cleaned = strip_comments_in_blocks(text)
    assert cleaned == "```python\ndef f(x):\n    return x\n```\n\nText # kept\n"
    # a body that was only a docstring stays valid Python
    only_doc = strip_comments_in_blocks('```python\nclass A:\n    """Doc."""\n```\n')
    ast.parse(code_blocks(only_doc)[0])
    with pytest.raises(SyntaxError):
        strip_comments_in_blocks("```python\ndef broken(:\n```\n")


def test_definition_names_ignore_case_and_underscores() -> None:
    functions, classes = definition_names("class My_Thing:\n    def get_x(self): ...\ndef GetX(): ...")
    assert functions == frozenset({"getx"})
    assert classes == frozenset({"mything"})


# ------------------------------------------------------------------------------------ stages


#: The enhance branch's clean (14f4294 and later): numpy shuffle 6666, 200 words, name sets.
ENHANCE_CLEAN = CleanParams(shuffle="numpy", seed=6666, max_instruction_words=200, func_names="sets")


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_sanitize_counts_every_drop_and_rewrites_in_raw_format(tmp_path: Path) -> None:
    records = [
        {"id": "a/0", "instruction": "Add one.", "response": response(tail="Done.\n")},
        {"id": "b/0", "instruction": "Add one.", "response": "no sections at all"},
        {"id": "c/3", "instruction": "Add one.", "response": response(tests="print(1)"), "sample": 3},
    ]
    out = tmp_path / "sanitized.jsonl"
    stats = run_sanitize(write(tmp_path / "in.jsonl", records), out, show_progress=False)
    assert stats.counts() == {"in": 3, "out": 1, "dropped": 2}
    assert dict(stats.drops) == {"format:tag_count": 1, "format:tests_no_assert": 1}
    [kept] = read_jsonl(out)
    assert kept["id"] == "a/0" and "Done." not in kept["response"]
    assert kept["response"] == split_sections(records[0]["response"]).raw()


def test_sanitize_names_file_line_and_field_of_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [{"id": "a", "instruction": "x", "response": response()},
                                         {"id": "b", "instruction": 7, "response": response()}])
    with pytest.raises(RecordError) as caught:
        run_sanitize(path, tmp_path / "out.jsonl", show_progress=False)
    assert "in.jsonl" in str(caught.value) and ":2" in str(caught.value)
    assert "instruction" in str(caught.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_shuffle_is_the_datasets_shuffle() -> None:
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_dict({"i": list(range(57))})
    assert rows.shuffle(seed=6666)["i"] == shuffled_order(57, 6666)


def test_clean_dedups_and_diversifies_in_the_seeded_order(tmp_path: Path) -> None:
    def rec(rid: str, instruction: str, code: str) -> dict:
        return {"id": rid, "instruction": instruction, "response": split_sections(response(code=code)).raw()}

    records = [
        rec("r0", "Write add_one.", "def add_one(x):\n    return x + 1"),
        rec("r1", "Write  add_one.", "def add_one(x):\n    return 1 + x"),  # same instruction (whitespace)
        rec("r2", "Write add one, differently.", "def add_one(x):\n    return x + 1"),  # same response
        rec("r3", "Something else.", "def AddOne(y):\n    return y + 1"),  # same names once normalized
        rec("r4", "word " * 201, "def long_one(x):\n    return x"),  # too long
        rec("r5", "Unrelated task.", "def unrelated(x):\n    return x * 2"),
        rec("r6", "Broken code.", "def broken(:\n    pass"),
    ]
    path = write(tmp_path / "sanitized.jsonl", records)
    out = tmp_path / "cleaned.jsonl"
    stats = run_clean(path, out, ENHANCE_CLEAN, show_progress=False)
    kept = read_jsonl(out)
    order = shuffled_order(len(records), 6666)
    # output follows the shuffled order
    assert [r["id"] for r in kept] == [records[i]["id"] for i in order if records[i]["id"] in {r["id"] for r in kept}]
    ids = {r["id"] for r in kept}
    # exactly one of the three add_one variants and AddOne survives: whichever the shuffle put first
    first = next(records[i]["id"] for i in order if records[i]["id"] in {"r0", "r1", "r2", "r3"})
    assert ids == {first, "r5"}
    assert stats.n_in == 7 and stats.n_out == 2
    assert stats.drops["instruction_too_long"] == 1 and stats.drops["code_syntax_error"] == 1
    assert sum(stats.drops.values()) == 5
    # deterministic: a rerun gives the same bytes
    again = tmp_path / "again.jsonl"
    run_clean(path, again, ENHANCE_CLEAN, show_progress=False)
    assert again.read_bytes() == out.read_bytes()


def test_release_clean_keys_joined_names_with_the_texts(tmp_path: Path) -> None:
    """The release: function names in visit order joined by a space go into seen_keys; an empty
    name string is a key too, case and underscores count, class names do not."""

    def rec(rid: str, instruction: str, code: str) -> dict:
        return {"id": rid, "instruction": instruction, "response": split_sections(response(code=code)).raw()}

    records = [
        rec("a", "One.", "def add_one(x):\n    return x + 1"),
        rec("b", "Two.", "def Add_One(x):\n    return 1 + x"),  # other case: new names
        rec("c", "Three.", "x = 1\nassert x"),  # no function: names ""
        rec("d", "Four.", "y = 2\nassert y"),  # names "" again: dropped
        rec("e", "Five.", "class A:\n    def add_one(self):\n        return 1"),  # names "add_one" again
        rec("f", "Six.", "def outer():\n    def inner():\n        pass\n    return inner\ndef last(): ..."),
    ]
    out = tmp_path / "cleaned.jsonl"
    stats = run_clean(write(tmp_path / "s.jsonl", records), out, CleanParams(), show_progress=False)
    kept = {r["id"] for r in read_jsonl(out)}
    # one of a/e ("add_one") and one of c/d (""): whichever the shuffle put first
    order = [records[i]["id"] for i in shuffled_order(6, 0, "python")]
    assert kept == {"b", "f", min("ae", key=order.index), min("cd", key=order.index)}
    assert stats.drops == {"duplicate_function_names": 2}
    assert joined_function_names("def outer():\n    def inner(): ...\n    return 1\nasync def last(): ...") == (
        "outer inner last"
    )
    assert shuffled_order(6, 0, "python") == _python_shuffle(6)


def _python_shuffle(n: int) -> list[int]:
    import random

    rows = list(range(n))
    random.seed(0)
    random.shuffle(rows)
    return rows


def test_clean_names_file_line_and_field_of_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path / "sanitized.jsonl", [{"id": "a", "instruction": "x", "response": response()},
                                                {"id": "b", "instruction": "y"}])
    with pytest.raises(RecordError, match=r"sanitized\.jsonl:2: field 'response': missing"):
        run_clean(path, tmp_path / "cleaned.jsonl", CleanParams(), show_progress=False)
    assert not (tmp_path / "cleaned.jsonl").exists()


def test_smart_rewrite_is_per_record_and_follows_upstream_rules() -> None:
    params = SmartParams(rng="per_record", remove_comments="ast")
    text = split_sections(response()).raw()
    results = [smart_rewrite("Write add_one.", text, record_rng(0, f"id{n}"), params) for n in range(400)]
    # the tests never survive (the instruction does not mention tests); tags are gone
    assert all("assert add_one" not in r.response and "[Tests]" not in r.response for r in results)
    assert all("[Implementation]" not in r.response for r in results)
    # comments removed, code intact
    assert all("# one more" not in r.response and "return x + 1" in r.response for r in results)
    for name in ("reasoning", "explanation"):
        share = sum(name in r.removed for r in results) / len(results)
        assert 0.4 < share < 0.6, (name, share)
    augmented = [r for r in results if r.assertion_added]
    assert 0.4 < len(augmented) / len(results) < 0.6
    for r in augmented:
        head, block = r.instruction.split("\n\nYour code should pass the following ", 1)
        assert head == "Write add_one."
        term, code = block.split(":\n```python\n", 1)
        lines = code.removesuffix("\n```").splitlines()
        assert term == ("assertions" if len(lines) > 1 else "assertion")
        assert set(lines) <= {"assert add_one(1) == 2", "assert add_one(-1) == 0"}
    # same seed and id, same result; another seed, other choices
    again = smart_rewrite("Write add_one.", text, record_rng(0, "id7"), params)
    assert again == results[7]
    assert [smart_rewrite("Write add_one.", text, record_rng(1, f"id{n}"), params) for n in range(400)] != results


def test_smart_keeps_tests_when_the_instruction_asks_for_them() -> None:
    text = split_sections(response()).raw()
    result = smart_rewrite("Write add_one and test it.", text, record_rng(0, "x"), SmartParams())
    assert "tests" not in result.removed and "assert add_one(1) == 2" in result.response
    assert not result.assertion_added and result.instruction == "Write add_one and test it."


def test_smart_drops_incomplete_responses() -> None:
    text = split_sections(response(code="def add_one(x):\n    # TODO: negative\n    return x + 1")).raw()
    with pytest.raises(FormatError) as caught:
        smart_rewrite("Write add_one.", text, record_rng(0, "x"), SmartParams())
    assert caught.value.reason == "incomplete"


def test_release_smart_draws_from_one_stream_in_file_order(tmp_path: Path) -> None:
    text = split_sections(response()).raw()
    records = [{"id": f"r{n}", "instruction": "Write add_one.", "response": text} for n in range(40)]
    out = tmp_path / "sft.jsonl"
    run_sft(write(tmp_path / "in.jsonl", records), out, SmartParams(), show_progress=False)
    rng = __import__("random").Random(0)
    want = [smart_rewrite("Write add_one.", text, rng, SmartParams()).response for _ in records]
    assert [r["response"] for r in read_jsonl(out)] == want
    # the same record in another position gets another fate: the order matters, as in the release
    assert len(set(want)) > 1


def test_sft_drops_contaminated_records_and_reports_them(tmp_path: Path, evalplus_dir: Path) -> None:
    del evalplus_dir  # resolved by the mirror below
    he = json.loads(
        __import__("gzip").open(shared_data() / "evalplus" / "HumanEvalPlus-v0.1.9.jsonl.gz", "rt").readline()
    )
    leaked = he["prompt"] + he["canonical_solution"]
    records = [
        {"id": "clean/0", "source_id": "clean", "sample": 0, "instruction": "Write add_one.",
         "response": split_sections(response()).raw(), "extra": "not carried"},
        {"id": "leak/2", "source_id": "leak", "sample": 2, "instruction": "Solve it.",
         "response": split_sections(response(code=leaked.strip())).raw()},
    ]
    path = write(tmp_path / "cleaned.jsonl", records)
    contamination = load_contamination(
        {"humaneval": "evalplus:v0.1.9", "mbpp": "evalplus:v0.1.0", "mirrors": [str(shared_data() / "evalplus")]}
    )
    out = tmp_path / "sft.jsonl"
    params = SmartParams(remove_comments="off", decontaminate=True)
    stats = run_sft(path, out, params, contamination=contamination, show_progress=False)
    assert stats.n_out == 1 and list(stats.drops) == ["contaminated:humaneval_docstrings"]
    assert contamination.hits == [{"id": "leak/2", "field": "response", "benchmark": "humaneval_docstrings"}]
    [kept] = read_jsonl(out)
    assert set(kept) == {"id", "instruction", "response", "source_id", "sample"}
    assert (kept["id"], kept["source_id"], kept["sample"]) == ("clean/0", "clean", 0)
    assert stats.extra["decontamination_checked"] == 2
    assert write_parquet(out, tmp_path / "sft.parquet") == 1
    assert pq.read_table(tmp_path / "sft.parquet").to_pylist() == [kept]
    # an empty SFT set still gives a Parquet file with typed columns
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert write_parquet(empty, tmp_path / "empty.parquet") == 0
    table = pq.read_table(tmp_path / "empty.parquet")
    assert table.num_rows == 0 and table.column_names == ["id", "instruction", "response"]


def test_sanitize_refuses_an_id_that_is_neither_string_nor_integer(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [{"id": ["a"], "instruction": "x", "response": response()}])
    with pytest.raises(RecordError, match=r"in\.jsonl:1: field 'id': must be a string or an integer, got list"):
        run_sanitize(path, tmp_path / "out.jsonl", show_progress=False)
