"""SFT examples as token ids with the loss on response tokens only, as upstream trained them.

Upstream (``star_align/train.py``): the prompt is ``SC2_INSTRUCT_PROMPT`` with the instruction
and an empty response, encoded with a leading BOS; the response is encoded with a trailing EOS;
the two are concatenated and cut to ``max_training_seq_length`` (1280 in the release), and the
labels are the ids with every prompt position set to -100, so only response tokens (and the
EOS) carry loss. Batches are right-padded: ids with the pad token, labels with -100.

The chat template saved with the checkpoint is upstream's: the same system line, ``###
Instruction`` / ``### Response`` turns, and an open ``### Response`` at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..prompt_template import SC2_INSTRUCT_PROMPT

#: Label value the loss ignores (PyTorch's CrossEntropyLoss default).
IGNORE_INDEX = -100

#: Upstream ``star_align.prompt_template.CHAT_TEMPLATE``, saved into the checkpoint's tokenizer.
CHAT_TEMPLATE = (
    "{{bos_token}}{{'You are an exceptionally intelligent coding assistant that consistently "
    "delivers accurate and reliable responses to user instructions.\\n\\n'}}\n"
    "{%- for message in messages %}\n"
    "    {%- if message['role'] == 'system' %}\n"
    "        {{ raise_exception('System messages are not allowed in this template.') }}\n"
    "    {%- else %}\n"
    "        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction\\n' + message['content'] + '\\n\\n'}}\n"
    "        {%- else %}\n"
    "{{'### Response\\n' + message['content'] + eos_token + '\\n\\n'}}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{{'### Response\\n'}}"
)


@dataclass(frozen=True)
class Encoded:
    """One training example: ``labels[i]`` is -100 wherever ``input_ids[i]`` is prompt."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def response_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def training_prompt(instruction: str) -> str:
    return SC2_INSTRUCT_PROMPT.format(instruction=instruction, response="")


def encode_example(tokenizer: Any, instruction: str, response: str, max_length: int) -> Encoded:
    """Token ids and labels of one SFT record, cut to ``max_length`` tokens.

    The release's ``star_align.train.map_dataset`` (0b19dbc): the prompt encoded without
    special tokens after a BOS, the response after it with an EOS, each added only where the
    tokenizer has one (a BOS-less tokenizer such as Qwen2.5-Coder's gets none).
    """
    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    prompt_ids = [*([bos] if bos is not None else []),
                  *tokenizer(training_prompt(instruction), add_special_tokens=False)["input_ids"]]
    response_ids = [*tokenizer(response, add_special_tokens=False)["input_ids"], *([eos] if eos is not None else [])]
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    return Encoded(input_ids[:max_length], labels[:max_length], len(input_ids) > max_length)


def collate(examples: Sequence[Encoded], pad_token_id: int) -> dict[str, Any]:
    """Right-padded tensors: ``input_ids``, ``labels`` (-100 on padding), ``attention_mask``."""
    import torch

    if not examples:
        raise ValueError("an empty batch")
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
