"""The instruction format StarCoder2-Instruct is fine-tuned on and prompted with.

One definition for the two stages that use it: training formats each SFT record with it
(:mod:`selfalign.training.data`) and evaluation prompts the checkpoint with it
(:mod:`selfalign.evaluation.prompts`). Upstream: ``star_align/prompt_template.py`` at the
release (0b19dbc).
"""

from __future__ import annotations

#: The release's ``SC2_INSTRUCT_PROMPT``, verbatim.
SC2_INSTRUCT_PROMPT = (
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate "
    "and reliable responses to user instructions.\n\n"
    "### Instruction\n{instruction}\n\n### Response\n{response}"
)
