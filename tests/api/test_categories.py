"""Names of the national classification's category codes."""

from __future__ import annotations

import pytest

from monitor_api.categories import CATEGORY_NAMES, CategoryName, category_name
from tests.api.conftest import Api


@pytest.mark.parametrize(("code", "name"), [
    ("01", "分析仪器"),
    ("0102", "质谱仪器"),
    ("010601", "波谱仪器"),  # six digits: its second-level class
    ("0112", "样品前处理及制备仪器"),
    ("0113", "分析仪器"),  # a second-level class not named here: its first level
    ("1401", "激光器"),
    ("99", "其他仪器"),
    ("9901", "其他仪器"),
    ("77", None),
    ("", None),
    (None, None),
])
def test_category_name(code: str | None, name: str | None) -> None:
    found = category_name(code)
    assert (found.zh if found else None) == name


def test_every_class_is_named_in_english_and_distinct_names_stay_distinct() -> None:
    assert category_name("0102") == CategoryName("质谱仪器", "Mass spectrometers")
    assert all(n.en and n.en.isascii() for n in CATEGORY_NAMES.values())
    pairs = set(CATEGORY_NAMES.values())  # one English name per Chinese one, and back
    assert len({zh for zh, _ in pairs}) == len({en for _, en in pairs}) == len(pairs)


def test_fifteen_first_level_classes_from_01_to_14_and_99() -> None:
    first = sorted(code for code in CATEGORY_NAMES if len(code) == 2)
    assert first == [f"{n:02d}" for n in range(1, 15)] + ["99"]


def test_the_classes_are_served_in_code_order(api: Api) -> None:
    with api.as_("user") as c:
        items = c.get("/categories").json()["items"]
    assert items[:3] == [
        {"code": "01", "name": "分析仪器", "name_en": "Analytical instruments"},
        {"code": "0101", "name": "电子光学仪器", "name_en": "Electron optical instruments"},
        {"code": "0102", "name": "质谱仪器", "name_en": "Mass spectrometers"}]
    assert items[-1] == {"code": "99", "name": "其他仪器", "name_en": "Other instruments"}
    assert len(items) == len(CATEGORY_NAMES)
