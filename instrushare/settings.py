"""Settings read from the environment once, in each command's ``main``, then passed down."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from instrushare.protocol import DEFAULT_TOPIC_PREFIX, TOPIC_PREFIX_PATTERN

if TYPE_CHECKING:  # the API imports these settings too, and needs no MQTT client
    import paho.mqtt.client as mqtt

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/instrushare"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


LOGIN_REFUSED = frozenset({0x86, 0x87})
"""CONNACK reason codes refusing the log-in: bad user name or password, not authorized (paho
gives MQTT 3.1.1's return codes 4 and 5 these MQTT 5 values)."""


def connect_refusal(code: int, reason: str, *, broker: str, setting: str) -> str:
    """What a refused CONNACK means, in words: a refused log-in says what to check, in the
    ``setting`` that holds the credentials."""
    if code in LOGIN_REFUSED:
        return (f"{broker} refused the log-in ({reason}): check the user name and password in"
                f" {setting}, and the broker's password file and ACL")
    return f"{broker} refused the connection ({reason})"


@dataclass(frozen=True, slots=True)
class MqttAddress:
    """Where a broker listens and how to reach it: parsed from ``mqtt://user:pass@host:port``,
    or ``mqtts://user:pass@host:port[?ca=/path/ca.pem]`` for TLS (port 8883 by default; the
    broker's certificate is checked against ``ca``, else against the system's CAs)."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str) -> MqttAddress:
        """ValueError saying what is wrong, the URL quoted without its password (as typed:
        one holding a character URLs reserve ends the URL's log-in part early)."""
        parts = urlsplit(url)
        userinfo = url.partition("://")[2].rpartition("@")[0]
        secret = userinfo.partition(":")[2]
        shown = repr(url.replace(f":{secret}@", ":***@", 1) if secret else url)
        query = parse_qs(parts.query)
        if userinfo and "@" not in parts.netloc and "ca" not in query:
            raise ValueError("MQTT URL: its user name or password holds a character URLs"
                             " reserve (/ ? #): percent-encode it (%2F, %3F, %23; and @ as %40,"
                             f" : as %3A, % as %25) in {shown}")
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts:// (got {shown})")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {shown}")
        try:
            port = parts.port
        except ValueError as exc:  # not a number, or out of range
            raise ValueError(f"MQTT URL: {exc} in {shown}") from None
        tls = parts.scheme in ("mqtts", "ssl")
        unknown = sorted(set(query) - {"ca"})
        if unknown:
            raise ValueError(f"MQTT URL: unknown parameter {unknown[0]!r} (known: ca)")
        ca_file = query["ca"][-1] if "ca" in query else None
        if ca_file is not None and not tls:
            raise ValueError("MQTT URL: ?ca= is for TLS, which needs mqtts://")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"MQTT URL: no CA certificate file {ca_file!r}")
        if ca_file is not None:
            try:
                ssl.create_default_context(cafile=ca_file)
            except ssl.SSLError as exc:
                raise ValueError(f"MQTT URL: {ca_file!r} holds no PEM certificate: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=ca_file,
        )

    def configure(self, client: mqtt.Client) -> None:
        """Give ``client`` (not yet connected) the log-in and TLS this address asks for."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file)


def _database_url(value: object) -> object:
    """Set but empty means the default; a URL must be PostgreSQL's, or libpq's ``key=value``
    pairs, with a port in range: a mistake is a settings error when the command starts."""
    if value == "":
        return DEFAULT_DATABASE_URL
    if not isinstance(value, str):
        return value
    is_url = value.startswith(("postgresql://", "postgres://"))
    if "://" in value and not is_url:
        raise ValueError(f"must start with postgresql:// (got {value.split('://')[0]}://)")
    from psycopg import ProgrammingError  # only the services with a database need psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        port = conninfo_to_dict(value).get("port")
    except ProgrammingError as exc:
        if is_url:  # libpq quotes the URL, or the part it cannot read
            raise ValueError("is not a valid postgresql:// URL"
                             f" ({_without_password(str(exc).strip(), value)})") from None
        raise ValueError("is neither a postgresql:// URL nor libpq key=value pairs"
                         f" ({str(exc).split(' after ')[0]})") from None
    if port is not None and not all(p.isdigit() and 0 < int(p) < 65536
                                    for p in str(port).split(",")):
        raise ValueError(f"port {port} is not a port (1-65535)")
    return value


def _without_password(text: str, url: str) -> str:
    """``text`` with the password of ``url`` shown as ``***``. The user information ends at
    the first ``@`` for libpq, at the last one for a person who did not percent-encode an
    ``@`` in the password: both are hidden, the longer first."""
    rest = url.partition("://")[2]
    if "@" not in rest:
        return text
    for userinfo in sorted({rest.partition("@")[0], rest.rpartition("@")[0]}, key=len,
                           reverse=True):
        if password := userinfo.partition(":")[2]:
            text = text.replace(password, "***")
    return text


DatabaseUrl = Annotated[str, BeforeValidator(_database_url)]
"""DATABASE_URL, as every service reads it."""


def _parsable_mqtt_url(url: str) -> str:
    MqttAddress.from_url(url)  # raises ValueError saying what is wrong
    return url


MqttUrl = Annotated[str, AfterValidator(_parsable_mqtt_url)]
"""A broker's URL, checked when read (services' MQTT_URL, a gateway's mqtt_url): a bad one is
a settings error when the command starts, not a failure later."""


class ServiceSettings(BaseSettings):
    """What every service needs: the database, the broker and the topic prefix."""

    model_config = SettingsConfigDict(
        env_prefix="INSTRUSHARE_", extra="ignore", populate_by_name=True, allow_inf_nan=False
    )

    database_url: DatabaseUrl = Field(default=DEFAULT_DATABASE_URL,
                                      validation_alias="DATABASE_URL")
    mqtt_url: MqttUrl = Field(default=DEFAULT_MQTT_URL, validation_alias="MQTT_URL")
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX, pattern=TOPIC_PREFIX_PATTERN)

    @field_validator("mqtt_url", mode="before")
    @classmethod
    def _mqtt_url(cls, value: object) -> object:
        """Set but empty means the default."""
        return DEFAULT_MQTT_URL if value == "" else value

    @property
    def mqtt(self) -> MqttAddress:
        return MqttAddress.from_url(self.mqtt_url)


class FleetSettings(ServiceSettings):
    """Settings of a command whose simulated gateways connect to MQTT_URL (sim, demo)."""

    @field_validator("mqtt_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """Each gateway logs in as itself, its id as user name (broker ACLs confine it by
        that), so a user name in the URL could only be refused later, gateway by gateway."""
        if MqttAddress.from_url(value).username is not None:
            raise ValueError("the simulated gateways log in as themselves (user name: their"
                             " gateway id, no password), so the URL takes no user name or"
                             " password: point it at a broker that lets them in")
        return value


def _index(loc: tuple[int | str, ...]) -> str:
    return str(loc[-1])


def describe(
    exc: ValidationError, *, name: Callable[[tuple[int | str, ...]], str] = _index,
    settings: type[BaseSettings] | None = None,
) -> str:
    """One indented line per invalid field, ``where: what``, for a person to fix; ``name``
    names an item of a list by its location (say, by the id in it instead of its index).
    With the ``settings`` class that failed, a field also names its environment variable, and
    a check across fields names those its message does."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        what = error["msg"]
        if error["type"] == "value_error":  # a validator's own sentence, without pydantic's
            what = what.removeprefix("Value error, ")  # "Value error, " in front
        elif error["type"] == "extra_forbidden":  # pydantic: "Extra inputs are not permitted"
            what = "unknown key (misspelt, or in another table than its own?)"
        where = ".".join(
            name(loc[:k + 1]) if isinstance(part, int) else str(part)
            for k, part in enumerate(loc)
        ) or (settings and _fields_named(what, settings)) or "(all)"
        env = settings and _env_name(settings, loc)
        lines.append(f"  {where}{f' ({env})' if env else ''}: {what}")
    return "\n".join(lines)


def _fields_named(message: str, settings: type[BaseSettings]) -> str:
    """The fields of ``settings`` that ``message`` names, in its order, each with its
    environment variable: ``a (PREFIX_A), b (PREFIX_B)``."""
    named = sorted((found.start(), field) for field in settings.model_fields
                   if (found := re.search(rf"\b{field}\b", message)))
    return ", ".join(f"{field} ({_env_name(settings, (field,))})" for _, field in named)


def _env_name(settings: type[BaseSettings], loc: tuple[int | str, ...]) -> str | None:
    """The environment variable of the field at ``loc``: its alias when it has one (such as
    DATABASE_URL, found there when given by field name); None when ``loc`` is the alias."""
    config = settings.model_config
    parts = [str(part) for part in loc if not isinstance(part, int)]
    delimiter = config.get("env_nested_delimiter") or ""
    if not parts or parts[0] not in settings.model_fields or (len(parts) > 1 and not delimiter):
        return None
    alias = settings.model_fields[parts[0]].validation_alias
    head = alias if isinstance(alias, str) else config.get("env_prefix", "") + parts[0]
    return delimiter.join([head, *parts[1:]]).upper()


def settings_class(title: str) -> type[BaseSettings] | None:
    """The settings class named ``title`` (a ValidationError's), among those loaded."""
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        cls = pending.pop()
        if cls.__name__ == title:
            return cls
        pending.extend(cls.__subclasses__())
    return None
