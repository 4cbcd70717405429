"""Writes src/selfalign/data/livecodebench-tiny/test.jsonl (the tiny profile's LiveCodeBench problems) and,
beside this script, solutions.json. The four problems written for the tests in the published
shape of livecodebench/code_generation_lite (its field names; private tests as the dataset
encodes them: JSON pickled, zlib-compressed, base64), and solutions.json: known-correct and
known-wrong solutions per problem. Run from the repository root; the outputs are committed."""

import base64
import json
import pickle
import zlib
from pathlib import Path

OUT = Path(__file__).parent
PROBLEMS = OUT.parents[2] / "src" / "selfalign" / "data" / "livecodebench-tiny" / "test.jsonl"


def packed(tests):
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test(given, expected, kind):
    return {"input": given, "output": expected, "testtype": kind}


ROWS = [
    {"question_id": "fx-lc-sum", "question_title": "Sum All", "question_content": "Return the sum of nums.",
     "platform": "leetcode", "contest_id": "weekly-contest-1", "contest_date": "2023-10-01T00:00:00",
     "starter_code": "class Solution:\n    def sumAll(self, nums: List[int]) -> int:\n        ",
     "difficulty": "easy", "public_test_cases": json.dumps([test("[1, 2, 3]", "6", "functional")]),
     "private_test_cases": packed([test("[]", "0", "functional"), test("[-5, 5, 7]", "7", "functional")]),
     "metadata": json.dumps({"func_name": "sumAll"})},
    {"question_id": "fx-lc-order", "question_title": "Order Two", "question_content":
     "Return [larger, smaller] of a and b.", "platform": "leetcode", "contest_id": "biweekly-contest-2",
     "contest_date": "2024-01-13T00:00:00",
     "starter_code": "class Solution:\n    def order(self, a: int, b: int) -> List[int]:\n        ",
     "difficulty": "easy", "public_test_cases": json.dumps([test("3\n5", "[5, 3]", "functional")]),
     "private_test_cases": json.dumps([test("9\n-1", "[9, -1]", "functional"), test("2\n2", "[2, 2]", "functional")]),
     "metadata": json.dumps({"func_name": "order"})},
    {"question_id": "fx-abc-mean", "question_title": "Mean", "question_content":
     "Given N and N integers, print their mean.", "platform": "atcoder", "contest_id": "abc300",
     "contest_date": "2024-02-10T00:00:00", "starter_code": "", "difficulty": "medium",
     "public_test_cases": json.dumps([test("4\n1 2 3 4\n", "2.5\n", "stdin")]),
     "private_test_cases": packed([test("1\n7\n", "7\n", "stdin"), test("2\n1 2\n", "1.5\n", "stdin")]),
     "metadata": json.dumps({})},
    {"question_id": "fx-cf-reverse", "question_title": "Reverse Lines", "question_content":
     "Given N and N words, print them in reverse order, one per line.", "platform": "codeforces",
     "contest_id": "1900", "contest_date": "2023-06-01T00:00:00", "starter_code": "", "difficulty": "hard",
     "public_test_cases": json.dumps([test("3\na\nb\nc\n", "c\nb\na\n", "stdin")]),
     "private_test_cases": packed([test("1\nx\n", "x\n", "stdin")]),
     "metadata": json.dumps({})},
]

SOLUTIONS = {
    "fx-lc-sum": {
        "correct": "class Solution:\n    def sumAll(self, nums: List[int]) -> int:\n        return sum(nums)\n",
        "wrong": "class Solution:\n    def sumAll(self, nums: List[int]) -> int:\n        return sum(nums[1:])\n",
    },
    "fx-lc-order": {
        "correct": "class Solution:\n    def order(self, a, b):\n        return (max(a, b), min(a, b))\n",
        "wrong": "class Solution:\n    def order(self, a, b):\n        return [a, b]\n",
    },
    "fx-abc-mean": {
        "correct": ("def main():\n    n = int(input())\n    xs = list(map(int, input().split()))\n"
                    "    print(f'{sum(xs) / n:.6f}')\n\nif __name__ == '__main__':\n    main()\n"),
        "wrong": "n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs) // n)\n",
    },
    "fx-cf-reverse": {
        "correct": ("import sys\ndata = sys.stdin.buffer.read().decode().split()\n"
                    "print('\\n'.join(reversed(data[1:])))\n"),
        "wrong": "import sys\ndata = sys.stdin.read().split()\nprint(' '.join(reversed(data[1:])))\n",
    },
}

if __name__ == "__main__":
    with open(PROBLEMS, "w") as fh:
        for row in ROWS:
            fh.write(json.dumps(row) + "\n")
    (OUT / "solutions.json").write_text(json.dumps(SOLUTIONS, indent=1) + "\n")
