"""Settings read from the environment once, in each command's ``main``, then passed down."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from instrushare.protocol import DEFAULT_TOPIC_PREFIX

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/instrushare"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


@dataclass(frozen=True, slots=True)
class MqttAddress:
    """Where a broker listens and how to log in: parsed from ``mqtt://user:pass@host:port``."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> MqttAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"MQTT URL must start with mqtt:// (got {url!r})")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {url!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class ServiceSettings(BaseSettings):
    """What every service needs: the database, the broker and the topic prefix."""

    model_config = SettingsConfigDict(
        env_prefix="INSTRUSHARE_", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    mqtt_url: str = Field(default=DEFAULT_MQTT_URL, validation_alias="MQTT_URL")
    topic_prefix: str = DEFAULT_TOPIC_PREFIX

    @property
    def mqtt(self) -> MqttAddress:
        return MqttAddress.from_url(self.mqtt_url)


def describe(exc: ValidationError) -> str:
    """One indented line per invalid field, ``where: what``, for a person to fix."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(all)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)
