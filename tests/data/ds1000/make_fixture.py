"""Writes src/selfalign/data/ds1000-tiny/test.jsonl and, beside this script, answers.json: three
problems written for the tests in the published shape of xlangai/DS-1000's test.jsonl (prompt,
reference_code, metadata {problem_id, library_problem_id, library, test_case_cnt,
perturbation_type, perturbation_origin_id}, code_context defining test_execution(solution)), one
per prompt shape the release's Completion mode converts: a BEGIN SOLUTION block (Pandas), a
function with ### BEGIN SOLUTION (Numpy), a script ending # SOLUTION START (Matplotlib); and
known-right and known-wrong answers. Run from the repository root; the outputs are committed."""

import json
from pathlib import Path

OUT = Path(__file__).parent
DATA = OUT.parents[2] / "src" / "selfalign" / "data" / "ds1000-tiny"

PANDAS_PROMPT = '''Problem:
I have a dataframe of scores per team and want, for each team, the row with the highest score.

    team  score  player
0      a      3       x
1      a      5       y
2      b      1       z

The result should keep every column.


A:
<code>
import pandas as pd


df = pd.DataFrame({"team": ["a", "a", "b"], "score": [3, 5, 1], "player": ["x", "y", "z"]})
</code>
result = ... # put solution in this variable
BEGIN SOLUTION
<code>
'''

PANDAS_CONTEXT = '''import pandas as pd
import numpy as np
import copy


def generate_test_case(test_case_id):
    def generate_ans(data):
        df = data
        return df.loc[df.groupby("team")["score"].idxmax()]

    def define_test_input(test_case_id):
        if test_case_id == 1:
            df = pd.DataFrame({"team": ["a", "a", "b"], "score": [3, 5, 1], "player": ["x", "y", "z"]})
        if test_case_id == 2:
            df = pd.DataFrame({"team": ["c", "d", "d", "c"], "score": [0, 9, 2, 4], "player": list("pqrs")})
        return df

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    try:
        pd.testing.assert_frame_equal(result, ans, check_dtype=False)
        return 1
    except:
        return 0


exec_context = r"""
import pandas as pd
import numpy as np
df = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''

NUMPY_PROMPT = '''Problem:
How do I get the sum of the squares of the even entries of a numpy array?
For [1, 2, 3, 4] it is 20.
A:
<code>
import numpy as np
example_a = np.array([1, 2, 3, 4])
def f(a = example_a):
    # return the solution in this function
    # result = f(a)
    ### BEGIN SOLUTION
'''

NUMPY_CONTEXT = '''import numpy as np
import copy


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        if test_case_id == 1:
            a = np.array([1, 2, 3, 4])
        elif test_case_id == 2:
            a = np.arange(-6, 7)
        return a

    def generate_ans(data):
        a = data
        return int((a[a % 2 == 0] ** 2).sum())

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    assert result == ans
    return 1


exec_context = r"""
import numpy as np
a = test_input
def f(a):
[insert]
result = f(a)
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)


def test_string(solution: str):
    assert "for " not in solution, "vectorize it: no loops"
'''

MATPLOTLIB_PROMPT = '''import numpy as np
import matplotlib.pyplot as plt

x = np.arange(10)
y = x ** 2

# plot y over x with a red dashed line
# SOLUTION START
'''

MATPLOTLIB_CONTEXT = '''import matplotlib
matplotlib.use("agg")
import numpy as np
import matplotlib.pyplot as plt

exec_context = r"""
import numpy as np
import matplotlib.pyplot as plt
x = np.arange(10)
y = x ** 2
[insert]
"""


def test_execution(solution: str):
    env = {}
    exec(exec_context.replace("[insert]", solution), env)
    line = plt.gca().get_lines()[0]
    assert line.get_color() in ("r", "red") and line.get_linestyle() == "--"
'''


def row(problem_id, library, prompt, reference, context, cases):
    return {"prompt": prompt, "reference_code": reference,
            "metadata": {"problem_id": problem_id, "library_problem_id": 0, "library": library,
                         "test_case_cnt": cases, "perturbation_type": "Origin", "perturbation_origin_id": problem_id},
            "code_context": context}


ROWS = [
    row(0, "Pandas", PANDAS_PROMPT, 'result = df.loc[df.groupby("team")["score"].idxmax()]\n', PANDAS_CONTEXT, 2),
    row(1, "Numpy", NUMPY_PROMPT, "    result = int((a[a % 2 == 0] ** 2).sum())\n    return result\n", NUMPY_CONTEXT, 2),
    row(2, "Matplotlib", MATPLOTLIB_PROMPT, 'plt.plot(x, y, "r--")\n', MATPLOTLIB_CONTEXT, 1),
]

# completions as the model writes them after the response prefix (cut at the first fence)
ANSWERS = {
    "0": {"correct": ['result = df.loc[df.groupby("team")["score"].idxmax()]\n```\nThis keeps every column.'],
          "wrong": ['result = df.groupby("team")["score"].max()\n```', "result = df\n", "df.sort_values(\n"]},
    "1": {"correct": ["    even = a[a % 2 == 0]\n    return int((even ** 2).sum())\n```"],
          "wrong": ["    return int((a ** 2).sum())\n```",
                    "    total = 0\n    for x in a:\n        if x % 2 == 0:\n            total += x * x\n    return total\n"]},
}

if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    with open(DATA / "test.jsonl", "w") as fh:
        for r in ROWS:
            fh.write(json.dumps(r) + "\n")
    (OUT / "answers.json").write_text(json.dumps(ANSWERS, indent=1) + "\n")
