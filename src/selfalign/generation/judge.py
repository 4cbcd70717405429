"""The LLM judge of seed functions (the release's ``seed_gathering`` filter): its eight solved
shots (data, kept here beside the code that uses them), the prompt in the form of a GitHub issue
and the parser of its verdict."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from .prompts import JUDGE_SEED, ParseError, PromptRequest

#: Upstream did not judge code whose prompt would exceed this many StarCoder2 tokens: it sent
#: the dummy prompt in its place, and because the final filter tested the *record* for
#: "def dummy()", such a record inherited the dummy prompt's verdict. For the judge stage.
JUDGE_MAX_PROMPT_TOKENS = 16380
#: filter_dataset.py's ``dummy``: the code judged in place of an over-long function.
JUDGE_DUMMY_CODE = 'def dummy(): \n    """\n    """\n pass'


@dataclass(frozen=True)
class JudgeShot:
    """One solved judge example: a function, the Yes/No answer and the written rationale."""

    code: str
    answer: Literal["Yes", "No"]
    rationale: str


# The seven judge examples of filter_dataset.py, in its source order (Apache-2.0, data that
# must stay byte-identical: the model's verdicts depend on it).
JUDGE_SHOTS: tuple[JudgeShot, ...] = (
    JudgeShot(
        code='''def simple_scan_network():
    """
    Do a simple network scan, which only works if your network configuration
    is 192.168.1.x
    """
    base_ip = "192.168.1."
    addresses = ['127.0.0.1']

    for index in range(1, 255):
        addresses.extend([base_ip + str(index)])

    return addresses''',
        answer="No",
        rationale=(
            "The simple_scan_network function you have provided seems to generate addresses "
            "that then would be used for a network scan, but does not actually perform it, "
            "unlike the function claims."
        ),
    ),
    JudgeShot(
        code='''import pandas


def coerce_integer(df):
    """
    Loop through the columns of a df, if it is numeric,
    convert it to integer and fill nans with zeros.
    This is somewhat heavy-handed in an attempt to force
    Esri to recognize sparse columns as integers.
    """
    # Numeric columns to not coerce to integer
    EXCEPT = ["latitude", "longitude", "zipCode"]

    def numeric_column_to_int(series):
        return (
            series.fillna(0).astype(int)
            if pandas.api.types.is_numeric_dtype(series) and series.name not in EXCEPT
            else series
        )

    return df.transform(numeric_column_to_int, axis=0)''',
        answer="Yes",
        rationale=(
            "The docstring does seem to match the implementation! The function loops through "
            "the columns of a df and coerces it as explained."
        ),
    ),
    JudgeShot(
        code='''def __trans_df_into_dict(data):
    """Converte DataFrame to dictionary.

    Args:
        data (pandas.DataFrame): DataFrame.

    Returns:
        dict: Name dictionary.
    """
    data["en_name"] = data["en_name"].str.upper()
    data["en_name_f"] = data["en_name"].str.split(" ", expand=True)[0]
    data["en_name_l"] = data["en_name"].str.split(" ", expand=True)[1]
    data["jp_name_f"] = data["jp_name"].str.split("・", expand=True)[0]
    data["jp_name_l"] = data["jp_name"].str.split("・", expand=True)[1]
    fullname_dict = dict(zip(data["en_name"], data["jp_name"]))
    fname_dict = dict(zip(data["en_name_f"], data["jp_name_f"]))
    lname_dict = dict(zip(data["en_name_l"], data["jp_name_l"]))
    return fullname_dict, fname_dict, lname_dict''',
        answer="No",
        rationale=(
            "The function__trans_df_into_dict  does indeed convert a dataframe into a "
            "dictionary, however, it converts various columns that were not described in the "
            "docstring.\nFor instance, nowhere in the docstring it mentions handling japanese "
            "characters or the name of the column."
        ),
    ),
    JudgeShot(
        code='''def inchesToMeters(inches):
    """Convert inches to meters."""
    return inches * 0.0254''',
        answer="Yes",
        rationale=(
            "inchesToMeters is a very simple function, the doccstring explains concisely its "
            "purpose, which is of converting inches to meters."
        ),
    ),
    JudgeShot(
        code='''def square_crop(im, target_size=None):
  """ Crop image to `target_size`. If that's None the image is squared
  to the smallest size
  """

  w = im.size[0]
  h = im.size[1]

  target_size = target_size if target_size else min(w, h)

  dx = (w - target_size) / 2
  dy = (h - target_size) / 2

  return im.crop((dx, dy, dx + target_size, dy + target_size))''',
        answer="Yes",
        rationale=(
            "Following the standard description for docstrings for functions and methods, the "
            "square_crop function description tells exactly what the function does."
        ),
    ),
    JudgeShot(
        code='''def _setup_motifs_files(args):
    """convenience fn, make sure setup is same across
    multiplicity/orientation/spacing workflows
    """
    motifs_files = {}
    motifs_files["early"] = "{}/{}/ggr.scanmotifs.h5".format(
        args.inputs["inference"][args.cluster]["scanmotifs_dir"],
        args.inputs["inference"][args.cluster]["scanmotifs_early_dir"])
    motifs_files["mid"] = "{}/{}/ggr.scanmotifs.h5".format(
        args.inputs["inference"][args.cluster]["scanmotifs_dir"],
        args.inputs["inference"][args.cluster]["scanmotifs_mid_dir"])
    motifs_files["late"] = "{}/{}/ggr.scanmotifs.h5".format(
        args.inputs["inference"][args.cluster]["scanmotifs_dir"],
        args.inputs["inference"][args.cluster]["scanmotifs_late_dir"])

    return motifs_files''',
        answer="No",
        rationale=(
            "The docstring for _setup_motifs_files just says this is a convenience function. "
            "There is definitely not enough information to re-implement this function from "
            "the docstring alone."
        ),
    ),
    JudgeShot(
        code='''def trip(u, v):
    """
    Returns the scalar triple product of vectors u and v and z axis.
    The convention is z dot (u cross v). Dotting with the z axis simplifies
    it to the z component of the u cross v
    The product is:
        positive if v is to the left of u, that is,
          the shortest right hand rotation from u to v is ccw
        negative if v is to the right of u, that is,
          the shortest right hand rotation from u to v is cw
        zero if v is colinear with u
    Essentially trip is the z component of the cross product of u x v
    """
    return (u[0] * v[1] - u[1] * v[0])''',
        answer="Yes",
        rationale=(
            "The docstring for the trip function is very detailed and describes the function's "
            "purpose and the mathematical formula used to calculate the scalar triple product."
        ),
    ),
)

_ISSUE = (
    "<issue_start>username_0: I have a function in Python and I'd like someone to check my "
    "description of this function.\n"
    "I'm doing this so that I can write a good docstring for this function.\n\n"
    "Here is the code for the function:\n```py\n{code}\n```\n\n"
    "Here is my description of this program:\n```\n{doc}\n```\n\n"
    "Do not attempt to execute the function or to judge its correctness.\n"
    'Answer with "Yes" or "No" depending on if my description has enough information alone '
    "to re-implement the function.\n"
    'Also, answer with "No" if the description does not match the function.'
)
_REPLY = "<issue_comment>username_1: Sure, no problem. I will be able to help.\nMy answer is:"


class DocstringError(ValueError):
    """Code without a pair of triple double quotes, which the judge prompt needs."""


def _unindent(text: str) -> str:
    """Remove the common leading whitespace of the non-blank lines (upstream's ``unindent``)."""
    lines = text.splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(line[cut:] if len(line) >= cut else line for line in lines)


def extract_docstring(code: str) -> tuple[str, str]:
    """Split ``code`` into (docstring, code without it) exactly as ``py_extract_docstring``.

    The first ``\"\"\"`` opens; the closing one is searched from one character after the
    opening quotes; the docstring is unindented and stripped; the code keeps everything else,
    including the whitespace around the removed literal.
    """
    opening = code.find('"""')
    if opening == -1:
        raise DocstringError('no """ docstring in the code')
    start = opening + 3
    rest = code[start + 1 :].find('"""')
    if rest == -1:
        raise DocstringError('unterminated """ docstring in the code')
    end = rest + start + 1
    return _unindent(code[start:end]).strip(), code[: start - 3] + code[end + 3 :]


def _issue(code: str) -> str:
    doc, body = extract_docstring(code)
    return _ISSUE.format(code=body, doc=doc)


def _solved_issue(shot: JudgeShot) -> str:
    return f"{_issue(shot.code)}{_REPLY} {shot.answer}\n\n{shot.rationale}\n\nUpvotes: 200"


_SOLVED = tuple(_solved_issue(shot) for shot in JUDGE_SHOTS)


def judge_shots_text() -> str:
    """The judge's seven solved issues, for the tiny model to learn the judge's format from."""
    return "".join(_SOLVED)


def judge_order(index: int, base_seed: int = JUDGE_SEED) -> tuple[int, ...]:
    """The shot order of record ``index``: the canonical list shuffled by Random(seed+index)."""
    order = list(range(len(JUDGE_SHOTS)))
    random.Random(base_seed + index).shuffle(order)
    return tuple(order)


class UpstreamJudgeOrder:
    """Replays filter_dataset.py's single, in-place, cumulative shuffle of the judge shots.

    Upstream calls ``random.shuffle(FEW_SHOTS)`` once per ``prompt_fmt``: first for the dummy
    prompt that measures the few-shot length, then once for every record in dataset order
    *except* records skipped for exceeding 16,380 tokens (they reuse the dummy prompt). The
    ``random.seed(42)`` at import does not survive: ``LLM(...)`` of vllm 0.4.1 (the version in
    seed_gathering/requirements.txt) runs ``set_random_seed(seed=0)`` in its in-process driver
    worker, in ``init_device`` and again at the end of ``_warm_up_model``, before the first
    ``prompt_fmt``. Hence ``rng_seed=0`` and ``leading_shuffles=1`` by default; pass
    ``rng_seed=42`` to replay the script as if run without vLLM's reseeding.

    ``order(ordinal)`` takes the record's position among the records upstream actually
    shuffled for (0 = first judged record), so an exact replay needs upstream's dataset order
    and the StarCoder2 token counts. Replaying is cheap (a few microseconds per shuffle) and
    this object remembers where it is, so increasing ordinals cost O(1) each; going back
    restarts from the seed.
    """

    def __init__(self, rng_seed: int = 0, leading_shuffles: int = 1):
        if leading_shuffles < 0:
            raise ValueError("leading_shuffles must be >= 0")
        self.rng_seed = rng_seed
        self.leading_shuffles = leading_shuffles
        self._restart()

    def _restart(self) -> None:
        self._rng = random.Random(self.rng_seed)
        self._order = list(range(len(JUDGE_SHOTS)))
        self._shuffles = 0

    def order(self, ordinal: int) -> tuple[int, ...]:
        if ordinal < 0:
            raise ValueError("ordinal must be >= 0")
        target = self.leading_shuffles + ordinal + 1
        if target < self._shuffles:
            self._restart()
        while self._shuffles < target:
            self._rng.shuffle(self._order)
            self._shuffles += 1
        return tuple(self._order)


def judge_prompt(
    code: str,
    index: int,
    *,
    base_seed: int = JUDGE_SEED,
    upstream_order: UpstreamJudgeOrder | None = None,
) -> PromptRequest:
    """The judge prompt for the seed function at ``index``: 7 solved issues, then this one.

    With ``upstream_order``, ``index`` is upstream's shuffle ordinal (see
    :class:`UpstreamJudgeOrder`) and the order is replayed instead of drawn per record.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    if upstream_order is None:
        order, seed = judge_order(index, base_seed), base_seed + index
    else:
        order, seed = upstream_order.order(index), upstream_order.rng_seed
    query = f"{_issue(code)}\nUpvotes: 100{_REPLY}"
    prompt = "".join(_SOLVED[i] for i in order) + query
    return PromptRequest(kind="judge", index=index, seed=seed, prompt=prompt, shots=order)


@dataclass(frozen=True)
class JudgeVerdict:
    """Counts of "yes"/"no" substrings in the lower-cased answer; ``keep`` iff yes > no."""

    yes: int
    no: int

    @property
    def keep(self) -> bool:
        return self.yes > self.no

    @property
    def tie(self) -> bool:
        """Ties (including an empty answer) count as No upstream; callers may count them."""
        return self.yes == self.no


def parse_judge(text: str | None) -> JudgeVerdict:
    """Upstream's verdict: substring counts, so "not"/"none" count as no, as they did there."""
    if text is None:
        raise ParseError("missing", "judge completion has no text")
    lowered = text.lower()
    return JudgeVerdict(yes=lowered.count("yes"), no=lowered.count("no"))
