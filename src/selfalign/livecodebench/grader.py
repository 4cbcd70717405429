"""The program that judges one LiveCodeBench code-generation sample, inside the sandbox.

Stdlib only: its source is sent into the sandbox with the sample and its tests appended (see
:func:`selfalign.livecodebench.codegen.grading_program`). My own port of what LiveCodeBench's
``lcb_runner/evaluation/testing_util.py`` (commit 28fef95) decides, kept small because it has to run
in a bare interpreter:

* **functional** tests (LeetCode; the problem names ``func_name``): the code runs behind
  LiveCodeBench's import block; ``Solution()``'s method (or the module's function) is called with
  each input line parsed as JSON, a returned tuple compared as a list, ``==`` the JSON output.
* **stdin** tests (AtCoder, Codeforces): a final ``if __name__ == '__main__':`` block is unwrapped,
  the module's statements other than imports become one function (as LiveCodeBench does, so the
  program runs once per test), called with ``sys.stdin`` reading the test's input and ``sys.stdout``
  captured; the output matches when its stripped lines equal the expected stripped lines, each line
  equal as text or as a list of ``Decimal`` numbers.
* each test under a ``timeout``-second alarm (LiveCodeBench: 6 s); the first failing test ends the
  program with ``WrongAnswer`` or ``TimeLimitExceeded`` (the sandbox's verdict reason names it), a
  sample's own exception propagates as itself; all tests passing runs the module to its end.

Not ported: LiveCodeBench's ``reliability_guard`` (the sandbox confines instead) and its
``builtins.open`` patch (reading a file named by the test input).
"""

import ast
import io
import json
import signal
import sys
from decimal import Decimal, InvalidOperation
from types import ModuleType

IMPORTS = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
    "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\n"
    "import statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\n"
    "import json\nsys.setrecursionlimit(50000)\n"
)


class WrongAnswer(Exception):
    pass


class TimeLimitExceeded(Exception):
    pass


def _alarm(signum, frame):
    raise TimeLimitExceeded("the test's time limit")


def _unwrap_main(code):
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            return ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    return code


def _as_function(code):
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # its SyntaxError is the verdict, raised where LiveCodeBench's is
    imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))] or [ast.Pass()]
    function = ast.FunctionDef(name="wrapped_function", args=ast.arguments(
        posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]), body=body, decorator_list=[],
        returns=None, type_comment=None, type_params=[], lineno=1)
    return IMPORTS + "\n" + ast.unparse(ast.Module(body=imports, type_ignores=[])) + "\n" + ast.unparse(
        ast.fix_missing_locations(function))


def _load(code, timeout):
    module = ModuleType("tmp_sol")
    signal.alarm(timeout)
    try:
        exec(compile(code, "<sample>", "exec"), module.__dict__)
    finally:
        signal.alarm(0)
    return module


class _Stdin(io.StringIO):
    """What the sample reads as sys.stdin: the test's input, also as ``.buffer`` bytes."""

    def __init__(self, text):
        super().__init__(text)
        self.buffer = io.BytesIO(text.encode("utf-8"))


def _lines(text):
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line):
    try:
        return [Decimal(part) for part in line.split()]
    except InvalidOperation:
        return None


def _same_output(got, expected):
    got_lines, expected_lines = _lines(got), _lines(expected)
    if len(got_lines) != len(expected_lines):
        return False
    for a, b in zip(got_lines, expected_lines, strict=True):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        if da is None or db is None or da != db:
            return False
    return True


def _short(value, limit=200):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit // 2] + "..." + text[-limit // 2:]


def _truncate(text, length=300):
    """LiveCodeBench's ``truncatefn``: the head and tail of a long text."""
    return text if len(text) <= length else text[: length // 2] + "...(truncated) ..." + text[-length // 2:]


#: Where the failing test stood (for the feedback line self repair's prompt quotes).
_AT: dict = {}
FEEDBACK_MARK = "#lcb-feedback "


def _functional_inputs(given):
    size = 300 // (given.count("\n") + 1)
    return "\n".join(_truncate(line, size) for line in given.strip().split("\n"))


def feedback(exc):
    """LiveCodeBench's metadata of a failing sample (``testing_util.run_test``): error_code -1
    compilation, -2 wrong answer, -3 time limit, -4 runtime error, with the test's input and
    expected output truncated as it truncates them."""
    if not _AT.get("inputs_set"):
        return {"error": repr(exc), "error_code": -1, "error_message": "Compilation Error"}
    where = {"inputs": _AT["inputs"], "expected": _AT["expected"]}
    if isinstance(exc, WrongAnswer):
        return {"output": _AT.get("output", ""), **where, "error_code": -2, "error_message": "Wrong Answer"}
    if isinstance(exc, TimeLimitExceeded):
        return {"error": repr(exc), "error_code": -3, "error_message": "Time Limit Exceeded", **where}
    return {"error": repr(exc), "error_code": -4, "error_message": "Runtime Error", **where}


def _at_test(given, expected, functional):
    _AT.update(inputs_set=True, inputs=_functional_inputs(given) if functional else _truncate(given),
               expected=_truncate(expected, 200))


def grade_functional(code, tests, fn_name, timeout):
    module = _load(IMPORTS + "\n\n" + code, timeout)
    target = module.Solution() if "class Solution" in code and hasattr(module, "Solution") else module
    method = getattr(target, fn_name, None)
    if method is None:
        raise WrongAnswer(f"no function {fn_name!r}")
    for index, (given, expected) in enumerate(tests):
        _at_test(given, expected, functional=True)
        args = [json.loads(line) for line in given.split("\n")]
        wanted = json.loads(expected)
        signal.alarm(timeout)
        try:
            got = method(*args)
        finally:
            signal.alarm(0)
        if isinstance(got, tuple):
            got = list(got)
        if got != wanted:
            try:
                _AT["output"] = _truncate(json.dumps(got), 200)
            except (TypeError, ValueError):
                _AT["output"] = _truncate(repr(got), 200)
            raise WrongAnswer(f"test {index}: got {_short(got)}, expected {_short(wanted)}")


def grade_stdin(code, tests, timeout):
    module = _load(_as_function(_unwrap_main(code)), timeout)
    function = getattr(module, "wrapped_function", None)
    if function is None:
        raise WrongAnswer("the program could not be wrapped")
    for index, (given, expected) in enumerate(tests):
        _at_test(given, expected, functional=False)
        stdin, stdout = sys.stdin, sys.stdout
        sys.stdin, sys.stdout = _Stdin(given), io.StringIO()
        signal.alarm(timeout)
        try:
            function()
        except SystemExit:
            pass
        finally:
            signal.alarm(0)
            got = sys.stdout.getvalue()
            sys.stdin, sys.stdout = stdin, stdout
        if not _same_output(got, expected):
            _AT["output"] = _truncate(got, 200)
            raise WrongAnswer(f"test {index}: got {_short(got)}, expected {_short(expected)}")


def main(payload):
    """``payload``: JSON of {code, tests: [[input, output], ...], fn_name (null: stdin), timeout}."""
    job = json.loads(payload)
    signal.signal(signal.SIGALRM, _alarm)
    try:
        if job["fn_name"]:
            grade_functional(job["code"], job["tests"], job["fn_name"], job["timeout"])
        else:
            grade_stdin(job["code"], job["tests"], job["timeout"])
    except BaseException as exc:
        # one line on the real stdout (the sample's own output was captured or came before):
        # the verdict's reason stays the exception's, the line is what self repair quotes
        sys.__stdout__.write("\n" + FEEDBACK_MARK + json.dumps(feedback(exc), sort_keys=True) + "\n")
        sys.__stdout__.flush()
        raise
