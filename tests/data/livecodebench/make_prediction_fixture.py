"""Writes the tiny profile's LiveCodeBench prediction items into src/selfalign/data/livecodebench-tiny/
(test_generation.jsonl, execution.jsonl) and, beside this script, answers.json. Items written for
the tests in the published shapes of livecodebench/test_generation (question_title,
question_content, question_id, contest_id, contest_date, difficulty, test: a JSON list of
{input, output, testtype}, starter_code, function_name, test_id) and livecodebench/execution-v2
(question_id, contest_id, contest_date, difficulty, function_name, code, input, output, id,
problem_id, numsteps); answers.json: per item, model answers known right, known wrong, and (code
execution) one that repeats the input. Run from the repository root; the outputs are committed."""

import json
from pathlib import Path

OUT = Path(__file__).parent
DATA = OUT.parents[2] / "src" / "selfalign" / "data" / "livecodebench-tiny"


def tests(given, expected):
    return json.dumps([{"input": given, "output": expected, "testtype": "functional"}])


TEST_GENERATION = [
    {"question_title": "Sum All", "question_content": "Return the sum of nums.\n", "question_id": "fx-lc-sum",
     "contest_id": "weekly-contest-1", "contest_date": "2023-10-01T00:00:00", "difficulty": "easy",
     "test": tests("[1, 2, 3]", "6"), "starter_code": "def sumAll(nums: List[int]) -> int:\n    pass",
     "function_name": "sumAll", "test_id": 0},
    {"question_title": "Sum All", "question_content": "Return the sum of nums.\n", "question_id": "fx-lc-sum",
     "contest_id": "weekly-contest-1", "contest_date": "2023-10-01T00:00:00", "difficulty": "easy",
     "test": tests("[]", "0"), "starter_code": "def sumAll(nums: List[int]) -> int:\n    pass",
     "function_name": "sumAll", "test_id": 1},
    {"question_title": "Order Two", "question_content": "Return [max(a, b), min(a, b)].\n",
     "question_id": "fx-lc-order", "contest_id": "biweekly-contest-2", "contest_date": "2024-01-13T00:00:00",
     "difficulty": "medium", "test": tests("3\n5", "[5, 3]"),
     "starter_code": "def order(a: int, b: int) -> List[int]:\n    pass", "function_name": "order", "test_id": 0},
]

EXECUTION = [
    {"question_id": "fx-lc-sum", "contest_id": "weekly-contest-1", "contest_date": "2023-10-01T00:00:00",
     "difficulty": "easy", "function_name": "sumAll",
     "code": "def sumAll(nums: List[int]) -> int:\n    total = 0\n    for x in nums:\n        total += x\n    return total",
     "input": "sumAll(nums = [1, 2, 3])", "output": "6", "id": "sample_0", "problem_id": "fx-lc-sum", "numsteps": 12},
    {"question_id": "fx-lc-freq", "contest_id": "weekly-contest-3", "contest_date": "2024-02-04T00:00:00",
     "difficulty": "medium", "function_name": "mostFrequent",
     "code": ("def mostFrequent(nums: List[int]) -> int:\n    counts = Counter(nums)\n"
              "    return int(np.argmax(np.bincount(nums))) if counts else -1"),
     "input": "mostFrequent(nums = [3, 1, 3, 2])", "output": "3", "id": "sample_2", "problem_id": "fx-lc-freq",
     "numsteps": 20},
    {"question_id": "fx-lc-words", "contest_id": "weekly-contest-4", "contest_date": "2024-03-02T00:00:00",
     "difficulty": "hard", "function_name": "shout",
     "code": "def shout(words: List[str]) -> List[str]:\n    return [w.upper() + '!' for w in words]",
     "input": "shout(words = ['a', 'bc'])", "output": "['A!', 'BC!']", "id": "sample_10", "problem_id": "fx-lc-words",
     "numsteps": 9},
]

# answers as the model writes them: test output prediction's an assert line (or a fenced block),
# code execution's the assertion up to [/ANSWER]
ANSWERS = {
    "testoutputprediction": {
        "fx-lc-sum/0": {"correct": ["assert sumAll([1, 2, 3]) == 6", "```python\nassert sumAll([1, 2, 3]) == 6\n```"],
                        "wrong": ["assert sumAll([1, 2, 3]) == 7", "assert sumAll([1, 2, 3]) == six",
                                  "the answer is 6"]},
        "fx-lc-sum/1": {"correct": ["# the empty sum\nassert sumAll([]) == 0"], "wrong": ["assert sumAll([]) != 0"]},
        "fx-lc-order/0": {"correct": ["assert order(3, 5) == [5, 3]"], "wrong": ["assert order(3, 5) == (5, 3)"]},
    },
    "codeexecution": {
        "sample_0": {"correct": ["assert sumAll(nums = [1, 2, 3]) == 6\n[/ANSWER]"], "wrong": ["7\n[/ANSWER]"],
                     "repeats_input": ["sumAll(nums = [1, 2, 3])\n[/ANSWER]"]},
        "sample_2": {"correct": ["assert mostFrequent(nums = [3, 1, 3, 2]) == 3\n[/ANSWER]"],
                     "wrong": ["assert mostFrequent(nums = [3, 1, 3, 2]) == 1\n[/ANSWER]"]},
        "sample_10": {"correct": ["assert shout(words = ['a', 'bc']) == ['A!', 'BC!']\n[/ANSWER]"],
                      "wrong": ["assert shout(words = ['a', 'bc']) == ['A', 'BC']\n[/ANSWER]",
                                "assert shout(words = ['a', 'bc']) == __import__('os').getcwd()\n[/ANSWER]"]},
    },
}

if __name__ == "__main__":
    for name, rows in (("test_generation.jsonl", TEST_GENERATION), ("execution.jsonl", EXECUTION)):
        with open(DATA / name, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    (OUT / "answers.json").write_text(json.dumps(ANSWERS, indent=1) + "\n")
