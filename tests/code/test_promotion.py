"""The promotion gate, as a pure decision."""

import pytest

from captcha_ocr.config import PromoteParams
from captcha_ocr.promotion.gate import Scores, decide

GATE = PromoteParams(min_exact_match=0.9, min_gain=0.0)


def scores(version="2", exact_match=0.95, cer=0.01, split="s1", metrics="1") -> Scores:
    return Scores(version, exact_match, cer, split, metrics)


@pytest.mark.parametrize(
    ("candidate", "promoted", "why"),
    [
        (scores(exact_match=0.97), True, "beats champion"),
        (scores(exact_match=0.95, cer=0.005), True, "lower CER"),
        (scores(exact_match=0.95, cer=0.01), False, "not better"),
        (scores(exact_match=0.93, cer=0.001), False, "not better"),
        (scores(exact_match=0.99, split="s2"), False, "another test split"),
        (scores(exact_match=0.99, metrics="2"), False, "metric definition"),
        (scores(version="1", exact_match=0.99), False, "already champion"),
    ],
)
def test_against_a_champion(candidate, promoted, why):
    champion = scores(version="1", exact_match=0.95, cer=0.01)
    decision, reason = decide(candidate, champion, GATE)
    assert decision is promoted
    assert why in reason


def test_first_champion_needs_the_minimum():
    assert decide(scores(exact_match=0.9), None, GATE)[0] is True
    promoted, reason = decide(scores(exact_match=0.89), None, GATE)
    assert promoted is False and "min_exact_match" in reason


def test_min_gain_demands_a_margin():
    gate = PromoteParams(min_exact_match=0.5, min_gain=0.02)
    champion = scores(version="1", exact_match=0.95)
    assert decide(scores(exact_match=0.96), champion, gate)[0] is False
    assert decide(scores(exact_match=0.98), champion, gate)[0] is True


def test_a_better_candidate_below_the_minimum_is_refused():
    champion = scores(version="1", exact_match=0.5, cer=0.3)
    promoted, reason = decide(scores(exact_match=0.6), champion, GATE)
    assert promoted is False and "min_exact_match" in reason


def test_a_rescored_champion_is_compared_on_the_candidates_split_and_the_reason_says_so():
    from dataclasses import replace

    champion = replace(scores(version="1", exact_match=0.9, split="s2"), basis="both read X")
    promoted, reason = decide(scores(exact_match=0.95, split="s2"), champion, GATE)
    assert promoted and reason.endswith("(both read X)") and "0.9000" in reason
