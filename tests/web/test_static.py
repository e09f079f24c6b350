"""The dashboard's files without a browser: served safely, complete dictionary, nothing remote."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from monitor_api.errors import Refusal
from monitor_api.web import STATIC_DIR
from tests.web.stack import Stack

JS = sorted(STATIC_DIR.glob("js/**/*.js"))
OWN_FILES = [STATIC_DIR / "index.html", STATIC_DIR / "css" / "app.css", *JS]


def test_dictionary_has_every_label_in_both_languages() -> None:
    strings = json.loads((STATIC_DIR / "i18n.json").read_text("utf-8"))
    assert set(strings) == {"zh", "en"}
    assert set(strings["zh"]) == set(strings["en"])
    assert all(v.strip() for lang in strings.values() for v in lang.values())
    used: set[str] = set()
    for path in JS:
        text = path.read_text("utf-8")
        used |= set(re.findall(r"""\bt\(\s*['"]([\w.]+)['"]""", text))
        used |= set(re.findall(r"""label:\s*'([a-z]+\.[\w.]+)'""", text))
        used |= set(re.findall(r"""\[\s*'([a-z]+\.\w+)'\s*,""", text))
        used |= set(re.findall(r"""nav:\s*'([\w.]+)'""", text))
    assert len(used) > 60
    assert used - set(strings["en"]) == set()
    # keys built at run time: states, roles, grades, codes of service records, bookings,
    # refusals
    for prefix, names in (("state", "offline off idle running fault maintenance"),
                          ("role", "admin lab_manager evaluator user"),
                          ("grade", "优秀 良好 合格 不合格"),
                          ("code", "internal external instrument_use technical_service"
                                   " commissioned_test"),
                          ("book.status", "requested approved completed rejected cancelled"),
                          ("book.kind", "self assisted sample"),
                          ("book.purpose", "research development teaching other"),
                          ("reason", " ".join(Refusal))):
        assert {f"{prefix}.{n}" for n in names.split()} <= set(strings["en"])


def test_no_remote_resources() -> None:
    """Labs' intranets often have no internet: every file the pages load is served here."""
    for path in OWN_FILES:
        text = path.read_text("utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path
        assert not re.search(r"(import|from)\s*['\"](https?:)?//", text), path
        assert "url(http" not in text and "@import" not in text, path
    index = (STATIC_DIR / "index.html").read_text("utf-8")
    for ref in re.findall(r'(?:src|href)="([^":]+)"', index):
        assert (STATIC_DIR / ref).is_file(), ref
    assert (STATIC_DIR / "vendor" / "chart.js.LICENSE.md").is_file()


def test_served_with_a_same_origin_policy(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as client:
        root = client.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "<main" in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        script = client.get("/ui/js/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/vendor/chart.umd.min.js").status_code == 200
        assert client.get("/ui/../pyproject.toml").status_code == 404


@pytest.mark.parametrize(
    ("who", "role", "institutions", "name"),
    [("admin", "admin", [], None), ("evaluator", "evaluator", [], None),
     ("neu_manager", "lab_manager", ["neu", "neu-ac"], "东北大学"),
     ("dut_manager", "lab_manager", ["dut"], "大连理工大学")],
)
def test_whoami(
    stack: Stack, who: str, role: str, institutions: list[str], name: str | None
) -> None:
    headers = {"Authorization": f"Bearer {stack.tokens[who]}"}
    body = httpx.get(f"{stack.url}/whoami", headers=headers).json()
    assert body["role"] == role and body["institutions"] == institutions
    assert body["institution_name"] == name
    assert httpx.get(f"{stack.url}/whoami").status_code == 401
