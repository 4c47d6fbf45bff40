"""Q-Insight's prompts, verbatim (paper Table A.4; Q-Insight's released training code).

The paper's PDF rendering shows the tags with spaces ("< think >"); the released code, which the
released weights were trained with, writes them as plain `<think> </think>` tags: that text is used.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>"
)

SCORE_PROMPT = (
    "What is your overall rating on the quality of this picture? The rating should be a float between 1 and 5, "
    "rounded to two decimal places, with 1 representing very poor quality and 5 representing excellent quality. "
    'Return the final answer in JSON format with the following keys: "rating": The score.'
)

DEGRADATION_PROMPT = (
    'Analyze the given image and determine if it contains any of the following distortions: "noise", '
    '"compression", "blur", or "darken". If a distortion is present, classify its severity as "slight", '
    '"moderate", "obvious", "serious", or "catastrophic". Return the result in JSON format with the following '
    'keys: "distortion_class": The detected distortion (or "null" if none). and "severity": The severity level '
    '(or "null" if none).'
)

# RACT cross-domain SFT: the quality description task (paper Table A.4).
DESCRIPTION_PROMPT = "What is your overall assessment of the quality of this picture?"

DISTORTION_CLASSES = ("noise", "compression", "blur", "darken")
SEVERITIES = ("slight", "moderate", "obvious", "serious", "catastrophic")

TASK_SCORE = "score"
TASK_DEGRADATION = "degradation"
TASK_PROMPTS = {TASK_SCORE: SCORE_PROMPT, TASK_DEGRADATION: DEGRADATION_PROMPT}


def conversation(task_prompt: str, system: bool = True) -> list[dict]:
    """Chat messages for one image question; the image block comes first in the user turn.

    The `{"type": "image"}` block is a placeholder: TRL fills it from the dataset's `image` column,
    `describe` passes the image to the processor beside the rendered text.
    """
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": task_prompt}]})
    return messages
