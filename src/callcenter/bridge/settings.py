"""The bridge's settings: one TOML file with every S-5 field, read into frozen dataclasses and checked at start.

Rules:
- Every problem is reported in words that name the table and key, say what is wrong and what to do; all problems
  of a file are reported together (``SettingsError.problems``), never as a traceback.
- Unknown tables and keys are errors: a misspelt key silently falling back to its default is worse than a refusal.
- Relative paths (``data_dir``, ``*_file``) are relative to the settings file's own directory; ``~`` is the home.
- A secret comes from the file itself (``secret = "..."``), from a file named there (``secret_file = "..."``, first
  line, surrounding whitespace dropped) or, when the settings file names neither, from the environment
  (``CALLCENTER_BRIDGE_SECRET``, ``CALLCENTER_AMI_SECRET``, ``CALLCENTER_TSAPI_PASSWORD``,
  ``CALLCENTER_TSAPI_AGENT_PASSWORD``; each also as ``..._FILE``). Giving both a value and a file is an error.
- Secrets are held in ``Secret``, whose ``repr``/``str``/format is ``***``: printing the settings, logging them or
  putting them in an error can never show one. ``Secret.reveal()`` is called only where the value is used.
- Fields required by one phone system are checked only when that phone system is chosen; types are always checked.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast, final

from callcenter import numbers, wire
from callcenter.hosts import same_host

ENV_CONFIG: Final = "CALLCENTER_BRIDGE_CONFIG"
ENV_BRIDGE_SECRET: Final = "CALLCENTER_BRIDGE_SECRET"  # noqa: S105 - a variable name, not a secret
ENV_AMI_SECRET: Final = "CALLCENTER_AMI_SECRET"  # noqa: S105 - a variable name, not a secret
ENV_TSAPI_PASSWORD: Final = "CALLCENTER_TSAPI_PASSWORD"  # noqa: S105 - a variable name, not a secret
ENV_TSAPI_AGENT_PASSWORD: Final = "CALLCENTER_TSAPI_AGENT_PASSWORD"  # noqa: S105 - a variable name, not a secret

EXAMPLE_FILE: Final = Path(__file__).with_name("bridge.example.toml")
BUSY_MODES: Final = ("dnd", "queue", "both")
CHANNEL_PROFILES: Final = ("production", "lab")  # callcenter.bridge.connectors.ami.translate.PROFILES
CALLBACK_SCHEMES: Final = ("http", "https")
MAX_STATUS_TIMEOUT: Final = 300.0
MIN_HEARTBEAT: Final = 1.0
MAX_HEARTBEAT: Final = 3600.0
_EXTENSION = re.compile(r"[0-9]{1,40}")


@final
class Secret:
    """A password or key. It never shows itself: ``repr``, ``str`` and formatting give ``***``."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str = "", origin: str = "") -> None:
        self._value = value
        self.origin = origin  # where it came from, for people: 'the settings file', 'file /x', 'CALLCENTER_...'

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class SettingsError(ValueError):
    """Settings that cannot be used; ``problems`` holds one line per problem, each naming the field."""

    def __init__(self, problems: list[str], source: Path | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source is not None else ""
        super().__init__("\n".join(prefix + problem for problem in self.problems))


@dataclass(frozen=True, slots=True)
class AsteriskSettings:
    """S-5.14: the Asterisk Manager Interface link."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    secret: Secret = field(default_factory=Secret)
    secret_file: Path | None = None
    channel: str = ""  # follow only channels of this device or technology (e.g. PJSIP/100 or PJSIP); empty = any
    context: str = ""  # follow only channels in this dialplan context; empty = any
    extension: str = ""  # follow only this extension (a desk bridge); empty = [bridge] extensions
    status_timeout: float = 5.0  # seconds; bounds every action sent to the PBX
    process_newchannel: bool = True
    process_newstate: bool = True
    profile: str = "production"
    busy_mode: Literal["dnd", "queue", "both"] = "dnd"
    originate_context: str = "from-internal"
    originate_channel: str = "PJSIP/{ext}"


@dataclass(frozen=True, slots=True)
class TsapiSettings:
    """S-5.13: Avaya-type PBXs, reached through CSTA."""

    internal_phone: str = ""
    username: str = ""
    password: Secret = field(default_factory=Secret)
    password_file: Path | None = None
    group_id: str = ""
    service: str = ""
    auto_in: bool = True
    agent_id: str = ""
    agent_password: Secret = field(default_factory=Secret)
    agent_password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class TapiSettings:
    """S-5.12: Windows TAPI."""

    phone_type: str = ""
    phone_type_name: str = ""  # the TAPI driver's name, for phone_type = "custom"
    internal_phone: str = ""


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    if sys.platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "callcenter-bridge"
    base = env.get("XDG_DATA_HOME") or str(_home(env) / ".local" / "share")
    return Path(base) / "callcenter-bridge"


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """``$CALLCENTER_BRIDGE_CONFIG``, else ``bridge.toml`` in the user's configuration directory."""
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "callcenter" / "bridge.toml"
    base = env.get("XDG_CONFIG_HOME") or str(_home(env) / ".config")
    return Path(base) / "callcenter" / "bridge.toml"


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """Everything the bridge needs to run, checked. Build it with ``load_settings`` or ``parse_settings``."""

    secret: Secret
    phone_system: wire.PhoneSystem = wire.PhoneSystem.ASTERISK
    address: str = "127.0.0.1"
    port: int = 5050
    callback_address: str = "127.0.0.1"
    callback_port: int = 8000
    callback_scheme: Literal["http", "https"] = "http"
    bridge_id: str = "office"
    secret_file: Path | None = None
    extended_log: bool = False
    external_log: bool = True
    run_at_startup: bool = False
    data_dir: Path = field(default_factory=default_data_dir)
    extensions: tuple[str, ...] = ()
    internal_digits: int = 0  # S-3.9: a number of exactly this many digits is internal; 0 = only agents' phones
    heartbeat_seconds: float = 30.0  # a LinkState at least this often tells the CRM the bridge is alive (S-4.5)
    asterisk: AsteriskSettings = field(default_factory=AsteriskSettings)
    tsapi: TsapiSettings = field(default_factory=TsapiSettings)
    tapi: TapiSettings = field(default_factory=TapiSettings)
    source: Path | None = None  # the settings file these came from

    @property
    def crm_url(self) -> str:
        """The CRM's base URL (S-5.8), without a trailing slash."""
        return f"{self.callback_scheme}://{_url_host(self.callback_address)}:{self.callback_port}"

    @property
    def service_url(self) -> str:
        """Where this bridge listens (S-5.7), as the CRM reaches it."""
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else "::1" if self.address == "::" else self.address
        return f"http://{_url_host(host)}:{self.port}"

    @property
    def followed_extensions(self) -> tuple[str, ...]:
        """The extensions the connector follows: the phone system's own one-extension setting, else ``extensions``."""
        own = {
            wire.PhoneSystem.ASTERISK: self.asterisk.extension,
            wire.PhoneSystem.TSAPI: self.tsapi.internal_phone,
            wire.PhoneSystem.TAPI: self.tapi.internal_phone,
        }[self.phone_system]
        return (own,) if own else self.extensions

    def secrets(self) -> list[str]:
        """Every secret value these settings hold (for the log redactor)."""
        values = [
            self.secret, self.asterisk.secret, self.tsapi.password, self.tsapi.agent_password,
        ]
        return [value.reveal() for value in values if value]

    def describe(self) -> str:
        """The effective settings as TOML-like text for people: secrets as ``***`` with where they came from."""
        lines: list[str] = []
        if self.source is not None:
            lines.append(f"# settings file: {self.source}")
        lines.append("[bridge]")
        lines.extend(_describe_fields(self, skip={"asterisk", "tsapi", "tapi", "source"}))
        for table in ("asterisk", "tsapi", "tapi"):
            lines.append("")
            lines.append(f"[{table}]")
            lines.extend(_describe_fields(getattr(self, table), skip=set()))
        return "\n".join(lines) + "\n"


def _describe_fields(obj: object, skip: set[str]) -> Iterator[str]:
    assert is_dataclass(obj)
    for item in fields(obj):
        if item.name in skip:
            continue
        value = getattr(obj, item.name)
        if isinstance(value, Secret):
            shown = f"*** (from {value.origin})" if value else "(not set)"
            yield f"{item.name} = {shown}"
        elif value is None:
            continue
        else:
            yield f"{item.name} = {_toml_value(value)}"


# ---- reading ----------------------------------------------------------------------------------------------------


def load_settings(path: Path | str, env: Mapping[str, str] = os.environ) -> BridgeSettings:
    """Read and check the settings file at ``path``; SettingsError says what is wrong and what to do."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SettingsError(
            [f"the settings file {path} does not exist; copy the documented example {EXAMPLE_FILE} there and edit "
             "it (callcenter bridge check --config FILE tests it)"]
        ) from None
    except UnicodeDecodeError as exc:
        raise SettingsError([f"the settings file {path} is not UTF-8 text ({exc.reason})"]) from None
    except OSError as exc:
        raise SettingsError(
            [f"the settings file {path} cannot be read ({exc.strerror}); check its permissions"]
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"not valid TOML: {exc}; compare it with {EXAMPLE_FILE}"], path) from None
    return parse_settings(raw, base_dir=path.resolve().parent, env=env, source=path)


def parse_settings(
    raw: Mapping[str, Any], *, base_dir: Path, env: Mapping[str, str] = os.environ, source: Path | None = None
) -> BridgeSettings:
    """Check the decoded TOML ``raw`` and build the settings (the settings page uses this before saving)."""
    problems: list[str] = []
    for table in raw:
        if table not in _TABLES:
            problems.append(f"unknown table [{table}]; the tables are {', '.join(f'[{t}]' for t in _TABLES)}")
    reader = _Reader(problems, base_dir, env)
    bridge = reader.table(raw, "bridge", _BRIDGE_KEYS)
    asterisk_raw = reader.table(raw, "asterisk", _ASTERISK_KEYS)
    tsapi_raw = reader.table(raw, "tsapi", _TSAPI_KEYS)
    tapi_raw = reader.table(raw, "tapi", _TAPI_KEYS)

    system_name = reader.string(bridge, "bridge", "phone_system", "asterisk").strip().lower()
    try:
        phone_system = wire.PhoneSystem(system_name)
    except ValueError:
        phone_system = wire.PhoneSystem.ASTERISK
        problems.append(
            f"[bridge] phone_system {system_name!r} is unknown; use one of: "
            + ", ".join(system.value for system in wire.PhoneSystem)
        )

    known_problems = len(problems)
    address = reader.address(bridge, "bridge", "address", "127.0.0.1")
    port = reader.port(bridge, "bridge", "port", 5050)
    callback_address = reader.address(bridge, "bridge", "callback_address", "127.0.0.1")
    callback_port = reader.port(bridge, "bridge", "callback_port", 8000)
    addresses_valid = len(problems) == known_problems
    if addresses_valid and port == callback_port and same_host(address, callback_address):
        problems.append(
            f"[bridge] service port {port} equals callback port {callback_port} on the same address {address}; "
            "choose different ports"
        )
    scheme = reader.choice(bridge, "bridge", "callback_scheme", "http", CALLBACK_SCHEMES)
    bridge_id = reader.string(bridge, "bridge", "bridge_id", "office").strip()
    if not bridge_id or len(bridge_id) > 200:
        problems.append("[bridge] bridge_id must be 1-200 characters; use the id given to `callcenter add-bridge`")
    secret, secret_file = reader.secret(bridge, "bridge", "secret", ENV_BRIDGE_SECRET, required=True)
    if secret and len(secret.reveal()) < wire.MIN_SECRET_LENGTH:
        problems.append(
            f"[bridge] secret ({secret.origin}) is too short: {len(secret.reveal())} characters; use at least "
            f"{wire.MIN_SECRET_LENGTH}, the one `callcenter add-bridge` printed"
        )
    data_dir_text = reader.string(bridge, "bridge", "data_dir", "")
    data_dir = reader.path(data_dir_text) if data_dir_text.strip() else default_data_dir(env)

    extensions = reader.extensions(bridge, "bridge", "extensions")
    heartbeat = reader.number(bridge, "bridge", "heartbeat_seconds", 30.0)
    if not MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT:
        problems.append(
            f"[bridge] heartbeat_seconds {heartbeat:g} is out of range; use {MIN_HEARTBEAT:g} to {MAX_HEARTBEAT:g} "
            "seconds (30 is usual)"
        )
        heartbeat = 30.0
    internal_digits = reader.whole(bridge, "bridge", "internal_digits", 0)
    if not (internal_digits == 0 or numbers.MIN_INTERNAL_DIGITS <= internal_digits <= numbers.MAX_INTERNAL_DIGITS):
        problems.append(
            f"[bridge] internal_digits {internal_digits} is out of range; use 0 (only agents' phones are internal) "
            f"or {numbers.MIN_INTERNAL_DIGITS}-{numbers.MAX_INTERNAL_DIGITS}, as in the CRM's call-center settings"
        )
        internal_digits = 0

    asterisk = _asterisk(reader, asterisk_raw, required=phone_system is wire.PhoneSystem.ASTERISK)
    tsapi = _tsapi(reader, tsapi_raw, required=phone_system is wire.PhoneSystem.TSAPI)
    tapi = _tapi(reader, tapi_raw, required=phone_system is wire.PhoneSystem.TAPI)
    settings_kwargs: dict[str, Any] = {
        "secret": secret,
        "phone_system": phone_system,
        "address": address,
        "port": port,
        "callback_address": callback_address,
        "callback_port": callback_port,
        "callback_scheme": scheme,
        "bridge_id": bridge_id,
        "secret_file": secret_file,
        "extended_log": reader.boolean(bridge, "bridge", "extended_log", False),
        "external_log": reader.boolean(bridge, "bridge", "external_log", True),
        "run_at_startup": reader.boolean(bridge, "bridge", "run_at_startup", False),
        "data_dir": data_dir,
        "extensions": extensions,
        "internal_digits": internal_digits,
        "heartbeat_seconds": heartbeat,
        "asterisk": asterisk,
        "tsapi": tsapi,
        "tapi": tapi,
        "source": source,
    }
    if problems:
        raise SettingsError(problems, source)
    return BridgeSettings(**settings_kwargs)


def _asterisk(reader: _Reader, raw: Mapping[str, Any], *, required: bool) -> AsteriskSettings:
    name = "asterisk"
    host = reader.address(raw, name, "host", "127.0.0.1")
    port = reader.port(raw, name, "port", 5038)
    username = reader.string(raw, name, "username", "").strip()
    if required and not username:
        reader.problems.append(
            '[asterisk] username is required with phone_system = "asterisk"; give the manager user from '
            "the PBX's manager.conf"
        )
    secret, secret_file = reader.secret(raw, name, "secret", ENV_AMI_SECRET, required=required, active=required)
    timeout = reader.number(raw, name, "status_timeout", 5.0)
    if not 0 < timeout <= MAX_STATUS_TIMEOUT:
        reader.problems.append(
            f"[asterisk] status_timeout {timeout:g} is out of range; use seconds above 0 and at most "
            f"{MAX_STATUS_TIMEOUT:g} (5 is usual)"
        )
    extension = reader.string(raw, name, "extension", "").strip()
    if extension and not _EXTENSION.fullmatch(extension):
        reader.problems.append(f"[asterisk] extension {extension!r} is not an extension number; use digits only")
    originate_channel = reader.string(raw, name, "originate_channel", "PJSIP/{ext}").strip()
    if "{ext}" not in originate_channel:
        reader.problems.append(
            f"[asterisk] originate_channel {originate_channel!r} has no {{ext}} for the agent's extension; "
            'e.g. "PJSIP/{ext}"'
        )
    return AsteriskSettings(
        host=host,
        port=port,
        username=username,
        secret=secret,
        secret_file=secret_file,
        channel=reader.string(raw, name, "channel", "").strip(),
        context=reader.string(raw, name, "context", "").strip(),
        extension=extension,
        status_timeout=timeout,
        process_newchannel=reader.boolean(raw, name, "process_newchannel", True),
        process_newstate=reader.boolean(raw, name, "process_newstate", True),
        profile=reader.choice(raw, name, "profile", "production", CHANNEL_PROFILES),
        busy_mode=cast(Literal["dnd", "queue", "both"], reader.choice(raw, name, "busy_mode", "dnd", BUSY_MODES)),
        originate_context=reader.string(raw, name, "originate_context", "from-internal").strip(),
        originate_channel=originate_channel,
    )


def _tsapi(reader: _Reader, raw: Mapping[str, Any], *, required: bool) -> TsapiSettings:
    name = "tsapi"
    internal_phone = reader.string(raw, name, "internal_phone", "").strip()
    username = reader.string(raw, name, "username", "").strip()
    service = reader.string(raw, name, "service", "").strip()
    if required:
        for key, value, what in (
            ("internal_phone", internal_phone, "the extension whose calls are followed"),
            ("username", username, "the Avaya service user"),
            ("service", service, "the Avaya service name to log in to"),
        ):
            if not value:
                reader.problems.append(f'[tsapi] {key} is required with phone_system = "tsapi"; give {what}')
    if internal_phone and not _EXTENSION.fullmatch(internal_phone):
        reader.problems.append(f"[tsapi] internal_phone {internal_phone!r} is not an extension number; use digits only")
    password, password_file = reader.secret(
        raw, name, "password", ENV_TSAPI_PASSWORD, required=required, active=required
    )
    agent_password, agent_password_file = reader.secret(
        raw, name, "agent_password", ENV_TSAPI_AGENT_PASSWORD, required=False, active=required
    )
    return TsapiSettings(
        internal_phone=internal_phone,
        username=username,
        password=password,
        password_file=password_file,
        group_id=reader.string(raw, name, "group_id", "").strip(),
        service=service,
        auto_in=reader.boolean(raw, name, "auto_in", True),
        agent_id=reader.string(raw, name, "agent_id", "").strip(),
        agent_password=agent_password,
        agent_password_file=agent_password_file,
    )


def _tapi(reader: _Reader, raw: Mapping[str, Any], *, required: bool) -> TapiSettings:
    name = "tapi"
    phone_type = reader.string(raw, name, "phone_type", "").strip()
    phone_type_name = reader.string(raw, name, "phone_type_name", "").strip()
    internal_phone = reader.string(raw, name, "internal_phone", "").strip()
    if required and not phone_type:
        reader.problems.append(
            '[tapi] phone_type is required with phone_system = "tapi"; give the PBX model, or "custom" with '
            "phone_type_name"
        )
    if required and not internal_phone:
        reader.problems.append(
            '[tapi] internal_phone is required with phone_system = "tapi"; give the extension whose calls are followed'
        )
    if phone_type.lower() == "custom" and not phone_type_name:
        reader.problems.append(
            "[tapi] phone_type_name is required when phone_type is custom; give the TAPI driver's name"
        )
    if internal_phone and not _EXTENSION.fullmatch(internal_phone):
        reader.problems.append(f"[tapi] internal_phone {internal_phone!r} is not an extension number; use digits only")
    return TapiSettings(phone_type=phone_type, phone_type_name=phone_type_name, internal_phone=internal_phone)


_BRIDGE_KEYS: Final = (
    "phone_system", "address", "port", "callback_address", "callback_port", "callback_scheme", "bridge_id", "secret",
    "secret_file", "extended_log", "external_log", "run_at_startup", "data_dir", "extensions", "internal_digits",
    "heartbeat_seconds",
)
_ASTERISK_KEYS: Final = (
    "host", "port", "username", "secret", "secret_file", "channel", "context", "extension", "status_timeout",
    "process_newchannel", "process_newstate", "profile", "busy_mode", "originate_context", "originate_channel",
)
_TSAPI_KEYS: Final = (
    "internal_phone", "username", "password", "password_file", "group_id", "service", "auto_in", "agent_id",
    "agent_password", "agent_password_file",
)
_TAPI_KEYS: Final = ("phone_type", "phone_type_name", "internal_phone")
_TABLES: Final = {"bridge": _BRIDGE_KEYS, "asterisk": _ASTERISK_KEYS, "tsapi": _TSAPI_KEYS, "tapi": _TAPI_KEYS}


class _Reader:
    """Typed access to the decoded TOML that records a problem (and returns the default) instead of raising."""

    def __init__(self, problems: list[str], base_dir: Path, env: Mapping[str, str]) -> None:
        self.problems = problems
        self.base_dir = base_dir
        self.env = env

    def table(self, raw: Mapping[str, Any], name: str, known: tuple[str, ...]) -> Mapping[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.problems.append(f"[{name}] must be a table (a [{name}] section), not a value")
            return {}
        for key in value:
            if key not in known:
                self.problems.append(f"[{name}] has an unknown setting {key!r}; check the spelling (known: "
                                     f"{', '.join(known)})")
        return value

    def string(self, raw: Mapping[str, Any], table: str, key: str, default: str) -> str:
        value = raw.get(key, default)
        if isinstance(value, str):
            if "\x00" in value:
                self.problems.append(f"[{table}] {key} contains a NUL character")
                return default
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        self.problems.append(f'[{table}] {key} must be text in quotes, e.g. {key} = "{default}"')
        return default

    def boolean(self, raw: Mapping[str, Any], table: str, key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if isinstance(value, bool):
            return value
        self.problems.append(f"[{table}] {key} must be true or false (without quotes), not {value!r}")
        return default

    def number(self, raw: Mapping[str, Any], table: str, key: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.problems.append(f"[{table}] {key} must be a number of seconds (without quotes), not {value!r}")
        return default

    def whole(self, raw: Mapping[str, Any], table: str, key: str, default: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.problems.append(f"[{table}] {key} must be a whole number (without quotes), not {value!r}")
        return default

    def port(self, raw: Mapping[str, Any], table: str, key: str, default: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.append(f"[{table}] {key} must be a whole number from 1 to 65535, not {value!r}")
            return default
        if not 1 <= value <= 65535:
            self.problems.append(
                f"[{table}] {key} {value} is out of range; use a port from 1 to 65535 (1024 or more needs no "
                "administrator rights)"
            )
            return default
        return value

    def address(self, raw: Mapping[str, Any], table: str, key: str, default: str) -> str:
        value = self.string(raw, table, key, default).strip()
        if not value or any(ch.isspace() for ch in value) or "/" in value:
            self.problems.append(
                f"[{table}] {key} {value!r} is not a host name or IP address; e.g. {key} = \"{default}\""
            )
            return default
        return value.strip("[]")

    def choice(self, raw: Mapping[str, Any], table: str, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.string(raw, table, key, default).strip().lower()
        if value not in allowed:
            self.problems.append(f"[{table}] {key} {value!r} is unknown; use one of: {', '.join(allowed)}")
            return default
        return value

    def extensions(self, raw: Mapping[str, Any], table: str, key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list):
            self.problems.append(f'[{table}] {key} must be a list, e.g. {key} = ["100", "101"] (empty = all)')
            return ()
        out: list[str] = []
        for item in value:
            text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
            if not isinstance(text, str) or not _EXTENSION.fullmatch(text.strip()):
                self.problems.append(
                    f"[{table}] {key}: {item!r} is not an extension number; use digits in quotes, "
                    f'e.g. {key} = ["100", "101"]'
                )
                continue
            if text.strip() not in out:
                out.append(text.strip())
        return tuple(out)

    def path(self, text: str) -> Path:
        text = text.strip()
        if text == "~" or text.startswith(("~/", "~\\")):
            return _home(self.env) / text[2:]
        path = Path(text)
        return path if path.is_absolute() else self.base_dir / path

    def secret(
        self, raw: Mapping[str, Any], table: str, key: str, env_name: str, *, required: bool, active: bool = True
    ) -> tuple[Secret, Path | None]:
        """The secret ``key`` of ``table`` and the file it came from. An inactive secret (of a phone system not
        chosen) is not read: a missing password file of an unused phone system must not stop the bridge."""
        file_key = f"{key}_file"
        value = raw.get(key, "")
        file_text = raw.get(file_key)
        if value != "" and file_text is not None:
            self.problems.append(f"[{table}] give either {key} or {file_key}, not both")
            return Secret(), None
        if not isinstance(value, str):
            self.problems.append(f"[{table}] {key} must be text in quotes")
            return Secret(), None
        if value:
            return Secret(value, "the settings file"), None
        if file_text is not None:
            if not isinstance(file_text, str) or not file_text.strip():
                self.problems.append(f'[{table}] {file_key} must be a file name in quotes, e.g. {file_key} = "/etc/x"')
                return Secret(), None
            path = self.path(file_text)
            if not active:
                return Secret(), path
            return self._secret_from_file(path, f"[{table}] {file_key}"), path
        if active and self.env.get(env_name):
            return Secret(self.env[env_name], f"environment variable {env_name}"), None
        env_file = self.env.get(f"{env_name}_FILE")
        if active and env_file:
            return self._secret_from_file(Path(env_file), f"environment variable {env_name}_FILE"), None
        if required:
            self.problems.append(
                f'[{table}] {key} is missing; set {file_key} = "/path/to/file" (or {key} = "...") in [{table}], '
                f"or the environment variable {env_name}"
            )
        return Secret(), None

    def _secret_from_file(self, path: Path, what: str) -> Secret:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.problems.append(
                f"{what}: the secret file {path} cannot be read ({reason}); create it with the secret on its "
                "first line, readable by this user, or fix the path"
            )
            return Secret()
        lines = text.strip().splitlines()
        value = lines[0].strip() if lines else ""
        if not value:
            self.problems.append(f"{what}: the secret file {path} is empty; put the secret on its first line")
        return Secret(value, f"file {path}")


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) if home else Path.home()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---- writing (the settings page) ------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path | str):
        # A TOML basic string accepts JSON's escapes; ensure_ascii=False keeps Greek readable.
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(raw: Mapping[str, Mapping[str, object]]) -> str:
    """TOML text for the settings tables in ``raw`` (flat tables of text, numbers, booleans and lists)."""
    lines = [
        "# Callcenter bridge settings, written by the bridge's settings page.",
        f"# Every setting is documented in {EXAMPLE_FILE}.",
    ]
    for table in _TABLES:
        values = raw.get(table)
        if not values:
            continue
        lines.append("")
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def to_raw(settings: BridgeSettings) -> dict[str, dict[str, object]]:
    """The settings as TOML tables, secrets as they were given: a value written in the settings file stays there,
    a secret file stays a file name, a secret from the environment is not written."""
    raw: dict[str, dict[str, object]] = {}
    tables: dict[str, object] = {
        "bridge": settings, "asterisk": settings.asterisk, "tsapi": settings.tsapi, "tapi": settings.tapi,
    }
    for table, obj in tables.items():
        assert is_dataclass(obj)
        out: dict[str, object] = {}
        file_fields = {item.name for item in fields(obj) if item.name.endswith("_file")}
        for item in fields(obj):
            name = item.name
            if name in ("asterisk", "tsapi", "tapi", "source") or name in file_fields:
                continue
            value = getattr(obj, name)
            if isinstance(value, Secret):
                file_value = getattr(obj, f"{name}_file")
                if file_value is not None:
                    out[f"{name}_file"] = str(file_value)
                elif value and value.origin == "the settings file":
                    out[name] = value.reveal()
                continue
            out[name] = value
        raw[table] = out
    return raw


def write_settings_file(path: Path, raw: Mapping[str, Mapping[str, object]]) -> None:
    """Replace ``path`` atomically with ``raw`` as TOML, readable by this user only (it may hold secrets)."""
    text = to_toml(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
