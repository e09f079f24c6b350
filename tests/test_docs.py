"""The docs name every endpoint and every setting the code has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from ingest import IngestConfig
from monitor_api import ApiSettings, create_app

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _route_pattern(path: str) -> str:
    """A documented path as a regex over OpenAPI paths. The docs write ``[/{id}]`` for an
    optional id, ``a|b`` (``a\\|b`` in tables) for alternative segments and ``...`` for any
    rest."""
    segments = []
    for segment in path.replace("\\|", "|").replace("[/{id}]", "\0").split("/"):
        alternatives = []
        for alternative in segment.split("|"):
            rx = re.escape(alternative)
            rx = re.sub(r"\\\{[^}]*\\\}", r"\\{[^/]+\\}", rx)
            rx = rx.replace("\0", r"(/\{[^/]+\})?").replace(re.escape("..."), ".*")
            alternatives.append(rx)
        segments.append("(" + "|".join(alternatives) + ")")
    return "/".join(segments)


def test_api_md_names_every_endpoint() -> None:
    text = (DOCS / "api.md").read_text()
    documented = [
        (method, _route_pattern(path.split("?")[0]))
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", text)
    ]
    schema = create_app(ApiSettings()).openapi()
    routes = [(method.upper(), path) for path, operations in schema["paths"].items()
              for method in operations]
    assert len(routes) > 40
    missing = [route for route in routes
               if not any(method == route[0] and re.fullmatch(rx, route[1])
                          for method, rx in documented)]
    assert missing == []


def test_patterns_match_only_what_they_say() -> None:
    rx = _route_pattern("/instruments/{id}/detail\\|timeline")
    assert re.fullmatch(rx, "/instruments/{instrument_id}/timeline")
    assert not re.fullmatch(rx, "/instruments/{instrument_id}/power")
    assert re.fullmatch(_route_pattern("/users[/{id}]"), "/users")
    assert not re.fullmatch(_route_pattern("/users[/{id}]"), "/users/me/x")


@pytest.mark.parametrize(("settings", "doc"), [(ApiSettings, "api.md"),
                                               (IngestConfig, "ingest.md")])
def test_every_setting_is_documented(settings: type[BaseSettings], doc: str) -> None:
    """By its environment name; tables may shorten a row's second name to its suffix."""
    text = (DOCS / doc).read_text()
    prefix = settings.model_config.get("env_prefix", "")
    missing = []
    for name, field in settings.model_fields.items():
        names = [f"{prefix}{name}".upper(), f"_{name.upper()}`"]
        if isinstance(field.validation_alias, str):
            names.append(field.validation_alias)
        if not any(n in text for n in names):
            missing.append(name)
    assert missing == []
