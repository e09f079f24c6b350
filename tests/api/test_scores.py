"""Scores from unrounded figures; grades, stars and ranks by the published two decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monitor_api import EvaluationRules
from monitor_api.evaluation import Span, rounded, score_institutions, score_instrument

YEAR_S = 365 * 86400.0
START = datetime(2025, 1, 1, tzinfo=UTC)
REGISTRY = {"id": "s1", "name": "S1", "institution_id": "u", "institution_name": "U",
            "root_id": "u", "tier": "service", "open_to_outside": True,
            "awaiting_disposal": False}


def _score(effective_s: float, external_s: float) -> dict[str, Any]:
    figures = {"effective_hours": round(effective_s / 3600, 4),
               "external_hours": round(external_s / 3600, 4), "openness_ratio": None,
               "faults": 0}
    span = Span(since=START, lo=START, hi=START + timedelta(days=365), year_s=YEAR_S)
    return score_instrument(figures, REGISTRY, seconds=(effective_s, external_s), up_s=None,
                            span=span, fault_since=None, overdue=False, mark=None,
                            rules=EvaluationRules())


def test_sharing_comes_from_the_hours_unrounded() -> None:
    """0.15 s of 1 s served outside: 15% >= the 10% target, full sharing marks, though the
    hours shown to 4 places (0.0003 h, 0.0 h) would give none."""
    scored = _score(1.0, 0.15)
    (shown,) = rounded([scored])
    assert (shown["effective_hours"], shown["external_hours"]) == (0.0003, 0.0)
    assert scored["sharing"] == EvaluationRules().sharing_points


def test_a_mean_published_as_90_is_graded_and_rated_as_90() -> None:
    """Two instruments whose mean is 89.996: published 90.00, so 优秀 and four stars."""
    rules = EvaluationRules()
    items = [{**_score(3600.0, 0.0), "score": score} for score in (89.992, 90.0)]
    (institution,) = score_institutions(items, {"u": {"name": "U", "tier": "service"}}, rules)
    assert round(institution["score"], 2) == 90.0
    assert (institution["grade"], institution["stars"]) == ("优秀", 4)
