"""Q-Insight rewards against hand-written completions (REFERENCE section 3)."""

from __future__ import annotations

import pytest

from rali_edge.errors import ConfigError
from rali_edge.teacher.prompts import SCORE_PROMPT, SYSTEM_PROMPT, TASK_DEGRADATION, TASK_SCORE
from rali_edge.teacher.rewards import (
    degradation_reward,
    degradation_reward_value,
    extract_think,
    format_ok,
    format_reward,
    make_score_reward,
    parse_rating,
    score_reward_value,
)

GOOD = '<think>\nThe image is sharp and well exposed.\n</think>\n<answer>\n{"rating": 3.50}\n</answer>'


def rated(r: str) -> str:
    return f'<think>\nok\n</think>\n<answer>\n{{"rating": {r}}}\n</answer>'


def test_prompts_are_verbatim():
    assert SYSTEM_PROMPT.startswith("A conversation between User and Assistant.")
    assert "<think> reasoning process here </think><answer> answer here </answer>" in SYSTEM_PROMPT
    assert SCORE_PROMPT.startswith("What is your overall rating on the quality of this picture?")
    assert SCORE_PROMPT.endswith('"rating": The score.')


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        '<think>  \nline one\nline two\n  </think>  \n<answer> \n{"rating": 2}  \n  </answer>  \n',
        '<think>\n\n</think>\n<answer>\n{"rating": 4.1, "note": "x"}\n</answer>',
    ],
)
def test_format_passes(text):
    assert format_ok(text)


@pytest.mark.parametrize(
    "text,why",
    [
        ('<think>The image is sharp.</think>\n<answer>\n{"rating": 3.5}\n</answer>', "no newline after <think>"),
        ('<think>\nsharp\n</think><answer>\n{"rating": 3.5}\n</answer>', "no newline between tags"),
        ('<think>\nsharp\n</think>\n<answer>{"rating": 3.5}\n</answer>', "no newline after <answer>"),
        ('<think>\nsharp\n</think>\n<answer>\n{"rating": {"v": 3.5}}\n</answer>', "nested braces"),
        ('<think>\nsharp\n</think>\n<answer>\n"rating": 3.5\n</answer>', "no braces"),
        ('Sure! <think>\nsharp\n</think>\n<answer>\n{"rating": 3.5}\n</answer>', "text before"),
        ('<think>\nsharp\n</think>\n<answer>\n{"rating": 3.5}\n</answer>\nHope this helps.', "text after"),
        ('<think>\nsharp\n</think>\n<answer>\n{"rating": 3.5} {"rating": 2}\n</answer>', "two objects"),
        ("", "empty"),
    ],
)
def test_format_fails(text, why):
    assert not format_ok(text), why


def test_format_reward_function_logs_pass_rate():
    logged = {}
    out = format_reward(None, [[{"role": "assistant", "content": GOOD}], "junk"], log_metric=logged.__setitem__)
    assert out == [1.0, 0.0]
    assert logged == {"format_pass_rate": 0.5}


@pytest.mark.parametrize("rating,gt,expected", [("3.349", 3.0, 1.0), ("3.35", 3.0, 0.0), ("2.651", 3.0, 1.0),
                                                ("2.65", 3.0, 0.0), ("3.00", 3.0, 1.0), ("5", 1.0, 0.0)])
def test_score_threshold_edges(rating, gt, expected):
    assert score_reward_value(rated(rating), gt) == expected


def test_score_threshold_is_configurable():
    assert score_reward_value(rated("3.45"), 3.0, threshold=0.5) == 1.0
    assert score_reward_value(rated("3.45"), 3.0, threshold=0.4) == 0.0
    with pytest.raises(ConfigError):
        make_score_reward(0.0)


@pytest.mark.parametrize(
    "text",
    [
        rated('"3.5"'),  # a string, not a number
        rated("3.2.1"),  # matches [\d.]+ but is no float
        '<think>\nok\n</think>\n<answer>\n{"score": 3.5}\n</answer>',  # wrong key
        '<think>\nok\n</think>\n{"rating": 3.5}',  # rating outside <answer>
        "no tags at all",
    ],
)
def test_unparsable_ratings_score_zero(text):
    assert parse_rating(text) is None
    assert score_reward_value(text, 3.5) == 0.0


def test_score_reward_skips_other_tasks_and_logs_parse_rate():
    fn = make_score_reward()
    logged = {}
    out = fn(None, [rated("3.4"), rated("x"), rated("1.0")], gt_score_norm=[3.5, 3.5, None],
             task=[TASK_SCORE, TASK_SCORE, TASK_DEGRADATION], log_metric=logged.__setitem__)
    assert out == [1.0, 0.0, None]
    assert logged == {"rating_parse_rate": 0.5}


def dist(cls: str, sev: str) -> str:
    return f'<think>\nx\n</think>\n<answer>\n{{"distortion_class": "{cls}", "severity": "{sev}"}}\n</answer>'


@pytest.mark.parametrize(
    "answer,gt,expected",
    [
        (dist("blur", "serious"), ("blur", "serious"), 1.0),
        (dist("blur", "slight"), ("blur", "serious"), 0.25),  # class right, severity wrong
        (dist("noise", "serious"), ("blur", "serious"), 0.0),  # class wrong, severity right: nothing
        (dist("null", "null"), (None, None), 1.0),  # clean image labelled null in the meta file
        ('<think>\nx\n</think>\n<answer>\n{"severity": "serious"}\n</answer>', ("blur", "serious"), 0.0),
    ],
)
def test_degradation_reward(answer, gt, expected):
    assert degradation_reward_value(answer, *gt) == expected


def test_degradation_reward_function_skips_score_rows():
    out = degradation_reward(None, [dist("blur", "slight"), GOOD], distortion_class=["blur", None],
                             severity=["slight", None], task=[TASK_DEGRADATION, TASK_SCORE])
    assert out == [1.0, None]


def test_extract_think_takes_the_last():
    text = "<think>first</think> then <think>\n  second one \n</think><answer>{}</answer>"
    assert extract_think(text) == "second one"
    assert extract_think("<think>   </think>") is None
    assert extract_think("no think") is None
