"""Config: YAML validated by pydantic models; every problem reported as FILE:LINE: key.path: msg."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from probes import METRICS
from probes.base import CheckSettings, Credentials, StrictModel, Target, parse_duration
from probes.onvif import OnvifSettings
from probes.ping import PingSettings
from probes.rtsp import RtspSettings
from probes.snmp import SnmpSettings

DEFAULT_CONFIG = Path("config/camnet.yaml")

# What camnet prints in place of a secret wherever it renders config (--debug views).
REDACTED = "<secret>"

ID_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
Ident = Annotated[str, Field(pattern=ID_RE)]
ID_RULE = "must be 1-63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels the exporter sets itself (device identity, the label names of camnet's own families
# and of every prober's metrics); a device's `labels:` may not override them.
RESERVED_LABELS = frozenset(
    {"commune", "site", "camera", "ap", "operator", "problem", "interface", "radio", "direction",
     "kind", "check", "reason", "job", "instance", "vendor", "model", "firmware", "serial",
     "sys_name", "sys_descr", "version", "le", "quantile"}
) | {label for metric in METRICS.values() for label in metric.labels}
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds every FILE:LINE: key.path: message line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME_RE.match(host))
    return True


def _check_host(v: str) -> str:
    # Never echo the value: an address like `admin:pw@10.0.0.5` carries a password.
    host = v.strip()
    if not _is_host(host):
        raise ValueError("must be a host name or an IP address (no scheme, user, port or path)")
    return host


def _check_url(v: str | None, schemes: tuple[str, ...]) -> str | None:
    # Never echo the value: the URL may carry a password.
    if v is None:
        return v
    try:
        parts = urlsplit(v)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials; put them in the camera's onvif auth")
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"must be an {wanted} URL with a host")
    return v


def _check_label_name(v: str) -> str:
    if not LABEL_NAME_RE.match(v) or v.startswith("__"):
        raise ValueError(
            "is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        )
    if v in RESERVED_LABELS:
        raise ValueError("is a label camnet sets itself and cannot be overridden")
    return v


LabelName = Annotated[str, AfterValidator(_check_label_name)]


# ---------------------------------------------------------------- secrets


class OnvifAuth(StrictModel):
    """Camera credentials for ONVIF (WS-Security digest) and RTSP (digest/basic)."""

    type: Literal["onvif"]
    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    rtsp_username: str | None = Field(default=None, description="if RTSP uses another user")
    rtsp_password: SecretStr | None = None
    rtsp_password_file: Path | None = None
    rtsp_password_env: str | None = None


SNMP_AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
SNMP_PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256")


class SnmpAuth(StrictModel):
    """SNMP credentials: a community for v1/v2c, a USM user for v3."""

    type: Literal["snmp"]
    version: Literal["1", "2c", "3"] = "2c"
    community: SecretStr | None = None
    community_file: Path | None = None
    community_env: str | None = None
    username: str | None = Field(default=None, min_length=1)
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"
    auth_password: SecretStr | None = None
    auth_password_file: Path | None = None
    auth_password_env: str | None = None
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] = "AES"
    priv_password: SecretStr | None = None
    priv_password_file: Path | None = None
    priv_password_env: str | None = None
    context_name: str = ""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Auth = Annotated[OnvifAuth | SnmpAuth, Field(discriminator="type")]
_AUTH_ADAPTER: TypeAdapter[OnvifAuth | SnmpAuth] = TypeAdapter(Auth)

# Which secret prefixes each auth type has; each can be given as PREFIX, PREFIX_file or PREFIX_env.
_SECRET_PREFIXES: dict[str, tuple[str, ...]] = {
    "onvif": ("password", "rtsp_password"),
    "snmp": ("community", "auth_password", "priv_password"),
}
# SNMP keys that only mean something for one family of versions.
_SNMP_V3_KEYS = (
    "username", "security_level", "auth_protocol", "auth_password", "auth_password_file",
    "auth_password_env", "priv_protocol", "priv_password", "priv_password_file",
    "priv_password_env", "context_name",
)
_SNMP_COMMUNITY_KEYS = ("community", "community_file", "community_env")
# RFC 3414 (USM) requires passphrases of at least 8 characters; agents reject shorter ones.
SNMP_V3_MIN_PASSPHRASE = 8


# ---------------------------------------------------------------- inventory


class Coordinates(StrictModel):
    """WGS84 position of a site."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class CommuneConfig(StrictModel):
    """A commune: the slug used in labels and its Vietnamese name."""

    id: Ident
    name: str = Field(min_length=1)


class SiteConfig(StrictModel):
    """A place with devices, usually a village hall with one internet line."""

    id: Ident
    commune: Ident
    name: str = Field(min_length=1, description="display name in Vietnamese")
    operator: str | None = Field(default=None, description="telco running the line")
    coordinates: Coordinates | None = None


class DeviceConfig(StrictModel):
    """Fields shared by cameras and access points."""

    id: Ident
    site: Ident
    address: str
    profile: Ident | None = None
    auth: Ident | None = None
    name: str | None = None
    labels: dict[LabelName, str] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _check_host(v)


class CameraConfig(DeviceConfig):
    """A camera: ONVIF endpoint and, optionally, fixed RTSP/snapshot URIs."""

    onvif_port: int | None = Field(default=None, ge=1, le=65535)
    rtsp_url: str | None = None
    picture_url: str | None = None
    snapshot_url: str | None = None

    @field_validator("rtsp_url", "picture_url")
    @classmethod
    def _rtsp_url(cls, v: str | None) -> str | None:
        return _check_url(v, ("rtsp", "rtsps"))

    @field_validator("snapshot_url")
    @classmethod
    def _snapshot_url(cls, v: str | None) -> str | None:
        return _check_url(v, ("http", "https"))


class ApConfig(DeviceConfig):
    """An access point polled over SNMP."""

    snmp_port: int | None = Field(default=None, ge=1, le=65535)


# ---------------------------------------------------------------- profiles


class CameraProfile(StrictModel):
    """How cameras of this profile are checked."""

    kind: Literal["camera"]
    ping: PingSettings = PingSettings()
    onvif: OnvifSettings = OnvifSettings()
    rtsp: RtspSettings = RtspSettings()


class ApProfile(StrictModel):
    """How access points of this profile are checked."""

    kind: Literal["ap"]
    ping: PingSettings = PingSettings()
    snmp: SnmpSettings = SnmpSettings()


Profile = Annotated[CameraProfile | ApProfile, Field(discriminator="kind")]
_PROFILE_CLASSES: dict[str, type[CameraProfile] | type[ApProfile]] = {
    "camera": CameraProfile,
    "ap": ApProfile,
}


class ServerConfig(StrictModel):
    """The HTTP listener for /metrics, /healthz, /probe, /frame and /-/reload."""

    listen: str = "127.0.0.1:9830"
    # Camera pictures of public places: served only when asked for, since `listen` is often
    # opened to a Prometheus on another host.
    frames: bool = Field(default=False, description="serve each camera's kept frame at /frame")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not HOST:PORT (e.g. 127.0.0.1:9830, [::1]:9830)")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if ":" in host and bare == host:
            raise ValueError(f"{v!r}: put an IPv6 address in brackets, e.g. [::1]:9830")
        if bare and not _is_host(bare):
            raise ValueError(f"{v!r}: {bare!r} is not an IP address or host name")
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        """The listen address split into host and port."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class DefaultsConfig(StrictModel):
    """Profile and auth used by devices that name none."""

    camera_profile: Ident | None = None
    ap_profile: Ident | None = None
    camera_auth: Ident | None = None
    ap_auth: Ident | None = None
    onvif_port: int = Field(default=80, ge=1, le=65535)
    snmp_port: int = Field(default=161, ge=1, le=65535)


class Config(StrictModel):
    """The whole config file."""

    server: ServerConfig = ServerConfig()
    # Where camnet keeps what it learned across restarts (the cameras' picture memory,
    # monitor/memory.py); relative to this file; unset: nothing is kept.
    state_dir: str | None = Field(default=None, min_length=1)
    defaults: DefaultsConfig = DefaultsConfig()
    communes: list[CommuneConfig] = Field(default_factory=list)
    sites: list[SiteConfig] = Field(default_factory=list)
    auths: dict[Ident, Auth] = Field(default_factory=dict)
    profiles: dict[Ident, Profile] = Field(default_factory=dict)
    cameras: list[CameraConfig] = Field(default_factory=list)
    aps: list[ApConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `aps:` with every item commented out is YAML null: treat it as an empty section.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in cls.model_fields)}
        return data


@dataclass(repr=False)
class LoadedConfig:
    """A validated config with secrets resolved and lookups ready."""

    path: Path
    config: Config
    secrets: dict[tuple[str, str], SecretStr]

    def __repr__(self) -> str:
        c = self.config
        return (
            f"LoadedConfig(path={str(self.path)!r}, sites={len(c.sites)}, "
            f"cameras={len(c.cameras)}, aps={len(c.aps)}, auths={sorted(c.auths)})"
        )

    @property
    def state_dir(self) -> Path | None:
        """`state_dir`, relative paths taken from the config file's directory; None if unset."""
        if self.config.state_dir is None:
            return None
        return self.path.parent / Path(self.config.state_dir).expanduser()

    @property
    def devices(self) -> list[CameraConfig | ApConfig]:
        """Every camera and access point, cameras first."""
        return [*self.config.cameras, *self.config.aps]

    def device(self, device_id: str) -> CameraConfig | ApConfig | None:
        """The camera or AP with this id, or None."""
        for d in self.devices:
            if d.id == device_id:
                return d
        return None

    def site(self, site_id: str) -> SiteConfig:
        """The site with this id (validated to exist)."""
        return next(s for s in self.config.sites if s.id == site_id)

    def profile_for(self, device: CameraConfig | ApConfig) -> CameraProfile | ApProfile:
        """The device's profile, the default one, or built-in defaults."""
        d = self.config.defaults
        if isinstance(device, CameraConfig):
            name = device.profile or d.camera_profile
            return self.config.profiles[name] if name else CameraProfile(kind="camera")
        name = device.profile or d.ap_profile
        return self.config.profiles[name] if name else ApProfile(kind="ap")

    def auth_name_for(self, device: CameraConfig | ApConfig) -> str | None:
        """The name of the device's auth, or of the default one for its kind."""
        d = self.config.defaults
        return device.auth or (d.camera_auth if isinstance(device, CameraConfig) else d.ap_auth)

    def auth_for(self, device: CameraConfig | ApConfig) -> OnvifAuth | SnmpAuth | None:
        """The device's auth, or the default one for its kind."""
        name = self.auth_name_for(device)
        return self.config.auths[name] if name else None

    def secret(self, auth: OnvifAuth | SnmpAuth, prefix: str) -> SecretStr | None:
        """A resolved secret of an auth (e.g. prefix `password`), wherever it came from."""
        for name, a in self.config.auths.items():
            if a is auth:
                return self.secrets.get((name, prefix))
        return None

    def target(self, device: CameraConfig | ApConfig) -> Target:
        """The prober's view of a device: labels, address, credentials, ports."""
        site = self.site(device.site)
        kind: Literal["camera", "ap"] = "camera" if isinstance(device, CameraConfig) else "ap"
        labels = {"commune": site.commune, "site": site.id, kind: device.id}
        if site.operator:
            labels["operator"] = site.operator
        labels.update(device.labels)
        auth = self.auth_for(device)
        creds = None
        if auth is not None:
            secrets = {p: self.secret(auth, p) for p in _SECRET_PREFIXES[auth.type]}
            creds = Credentials(auth, secrets)
        options: dict[str, Any] = {"name": device.name or site.name}
        if isinstance(device, CameraConfig):
            options["onvif_port"] = device.onvif_port or self.config.defaults.onvif_port
            options["rtsp_url"] = device.rtsp_url
            options["picture_url"] = device.picture_url
            options["snapshot_url"] = device.snapshot_url
        else:
            # device > the profile's snmp.port when written there > defaults.snmp_port
            snmp = getattr(self.profile_for(device), "snmp", None)
            profile_port = snmp.port if snmp is not None and "port" in snmp.model_fields_set else None
            options["snmp_port"] = (device.snmp_port or profile_port
                                    or self.config.defaults.snmp_port)
        return Target(device.id, kind, device.address, labels, creds, options)


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redacted_dump(loaded: LoadedConfig, device_id: str | None = None) -> dict[str, Any]:
    """The config (or one device's effective config) as plain data, secrets shown as <secret>."""
    if device_id is None:
        out: dict[str, Any] = _redact(loaded.config.model_dump())
        out["path"] = str(loaded.path)
        return out
    device = loaded.device(device_id)
    if device is None:
        raise KeyError(device_id)
    auth = loaded.auth_for(device)
    return {
        "device": _redact(device.model_dump()),
        "kind": "camera" if isinstance(device, CameraConfig) else "ap",
        "site": _redact(loaded.site(device.site).model_dump()),
        "profile": _redact(loaded.profile_for(device).model_dump()),
        "auth_name": loaded.auth_name_for(device),
        "auth": _redact(auth.model_dump()) if auth is not None else None,
    }


# ---------------------------------------------------------------- YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    """A safe loader; its composed node tree gives every key and item a line."""


def _compose_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _compose_lines(value_node, (*path, key), lines)
            # the key's own line, not its value's (a value may start on the next line)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, (*path, i), lines)


# An inventory of a few hundred devices is a few thousand nodes; far more means aliases that
# expand exponentially ("billion laughs"), which would hang validation.
MAX_YAML_NODES = 200_000


def _too_many_nodes(root: yaml.Node) -> bool:
    count = 0
    stack = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            return True
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                stack.extend((key_node, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False


def _duplicate_keys(node: yaml.Node, path: tuple[Any, ...], out: list[tuple[int, tuple[Any, ...]]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                out.append((key_node.start_mark.line + 1, (*path, key)))
            seen.add(key)
            _duplicate_keys(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, (*path, i), out)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = _key_shown(str(part))
            out += f".{part}" if out else part
    return out or "(top)"


def _key_shown(key: str) -> str:
    """A key as a problem shows it. `{password:hunter2}` (no space after the colon) makes
    YAML read one key, `password:hunter2`: what follows the colon or `=` is never shown."""
    cut = min((i for i in (key.find(":"), key.find("=")) if i >= 0), default=-1)
    return key if cut < 0 else key[:cut + 1] + "..."


class _Problems:
    """Collects problems with their line numbers; renders them sorted by line."""

    def __init__(self, path: Path, lines: dict[tuple[Any, ...], int]) -> None:
        self.path = path
        self.lines = lines
        self.items: list[tuple[int, str, str]] = []

    def line_of(self, loc: tuple[Any, ...]) -> int:
        """The line of a key, or of the nearest enclosing key or item when it is missing."""
        loc = tuple(loc)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def add(self, loc: tuple[Any, ...], message: str, line: int | None = None) -> None:
        """Record one problem at `loc` (its line found from the YAML unless given)."""
        self.items.append((line or self.line_of(loc), _dotted(loc), message))

    def render(self) -> list[str]:
        """The problems as FILE:LINE: key.path: message lines, by line then path."""
        return [f"{self.path}:{line}: {where}: {msg}" for line, where, msg in sorted(set(self.items))]


def _pydantic_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Map a pydantic error location onto keys of the data.

    Pydantic puts union tags (`onvif`, `camera`) and validator names (`function-after[...]`,
    `[key]`) in locations; they are not keys of the file and are dropped. A key the data lacks
    is kept only at the end (a missing required key)."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict | list):
            if last and isinstance(part, str) and "[" not in part:
                out.append(part)
        else:
            break
    return tuple(out)


_TAGS = {"'type'": "'onvif', 'snmp'", "'kind'": "'camera', 'ap'"}
_MESSAGE_PREFIXES = (
    ("Value error, ", ""),
    ("Input should be ", "must be "),
    ("String should ", "must "),
    ("Dictionary should ", "must "),
    ("List should ", "must "),
)


def _message(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        shown = _key_shown(str(err["loc"][-1]) if err["loc"] else "")
        if shown.endswith(":..."):
            return "unknown key (a space missing after ':'?)"
        if shown.endswith("=..."):
            return "unknown key (':' written as '='?)"
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"must be one of {ctx['expected_tags']} (got {ctx['tag']!r})"
    if kind == "union_tag_not_found":
        return f"required key is missing (one of {_TAGS.get(ctx.get('discriminator', ''), '...')})"
    if kind == "string_pattern_mismatch":
        return ID_RULE
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping"
    if kind == "string_type":
        return "must be a string (quote it)"
    if kind == "list_type":
        return "must be a list"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    msg = str(err["msg"])
    for prefix, replacement in _MESSAGE_PREFIXES:
        if msg.startswith(prefix):
            msg = replacement + msg[len(prefix):]
    return msg


def _model_problems(problems: _Problems, raw: dict[str, Any]) -> Config | None:
    """Validate the whole file with pydantic; report every error at its key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                # pydantic points at the item; the discriminator key is the one to fix
                loc = (*loc, str(err["ctx"]["discriminator"]).strip("'"))
            problems.add(_pydantic_loc(loc, raw), _message(err))
    return None


# ---------------------------------------------------------------- secrets and auth rules


def _read_secret(
    problems: _Problems, base: Path, loc: tuple[Any, ...], raw: dict[str, Any], prefix: str
) -> tuple[str | None, SecretStr | None]:
    """Resolve one secret from PREFIX, PREFIX_file or PREFIX_env: (the key used, its value)."""
    given = [k for k in (prefix, f"{prefix}_file", f"{prefix}_env") if raw.get(k) is not None]
    if not given:
        return None, None
    key = given[0]
    if len(given) > 1:
        for other in given[1:]:
            problems.add((*loc, other), f"give only one of {', '.join(given)}")
        return key, None
    value = raw[key]
    if key == prefix:
        return key, SecretStr(value) if isinstance(value, str) else None
    if not isinstance(value, str):
        return key, None  # reported by the model
    if key.endswith("_file"):
        file = Path(value)
        if not file.is_absolute():
            file = base / file
        try:
            # utf-8-sig: Notepad starts what it saves with a byte-order mark, no part of the secret.
            text = file.read_text(encoding="utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError:
            problems.add((*loc, key), f"secret file {file} is not UTF-8 text")
            return key, None
        except OSError as e:
            problems.add((*loc, key), f"cannot read secret file {file}: {e.strerror or type(e).__name__}")
            return key, None
        except ValueError:  # a NUL byte in the path
            problems.add((*loc, key), "is not a usable file name")
            return key, None
        if not text:
            problems.add((*loc, key), f"secret file {file} is empty")
            return key, None
        return key, SecretStr(text)
    env = os.environ.get(value) if "\0" not in value and "=" not in value else None
    if not env:
        problems.add((*loc, key), f"environment variable {value} is not set or empty")
        return key, None
    return key, SecretStr(env)


def _check_auth(
    problems: _Problems, base: Path, name: str, data: dict[str, Any], auth: OnvifAuth | SnmpAuth
) -> dict[tuple[str, str], SecretStr]:
    """Resolve the secrets of one valid auth entry and check the rules between its keys."""
    loc: tuple[Any, ...] = ("auths", name)
    out: dict[tuple[str, str], SecretStr] = {}
    used: dict[str, str | None] = {}
    for prefix in _SECRET_PREFIXES[auth.type]:
        used[prefix], secret = _read_secret(problems, base, loc, data, prefix)
        if secret is not None:
            out[(name, prefix)] = secret

    def need(prefix: str, why: str) -> None:
        if used[prefix] is None:
            problems.add((*loc, prefix), f"{why} needs {prefix}, {prefix}_file or {prefix}_env")

    def unused(keys: tuple[str, ...], why: str) -> None:
        for key in keys:
            if key in data:
                problems.add((*loc, key), f"not used with {why}")

    if isinstance(auth, OnvifAuth):
        need("password", "an onvif auth")
        return out
    if auth.version in ("1", "2c"):
        need("community", f"SNMP version {auth.version}")
        unused(_SNMP_V3_KEYS, f"SNMP version {auth.version} (only with version 3)")
        return out
    unused(_SNMP_COMMUNITY_KEYS, "SNMP version 3 (only with versions 1 and 2c)")
    if auth.username is None:
        problems.add((*loc, "username"), "SNMP version 3 needs a username")
    level = auth.security_level
    checked = {"noAuthNoPriv": (), "authNoPriv": ("auth_password",),
               "authPriv": ("auth_password", "priv_password")}[level]
    for prefix in ("auth_password", "priv_password"):
        if prefix not in checked:
            unused((prefix, f"{prefix}_file", f"{prefix}_env"), f"security_level {level}")
            continue
        need(prefix, f"security_level {level}")
        secret = out.get((name, prefix))
        key = used[prefix]
        if secret is not None and key and len(secret.get_secret_value()) < SNMP_V3_MIN_PASSPHRASE:
            problems.add(
                (*loc, key),
                f"SNMP v3 passphrases need at least {SNMP_V3_MIN_PASSPHRASE} characters",
            )
    return out


def _resolve_secrets(
    problems: _Problems, base: Path, raw: dict[str, Any]
) -> dict[tuple[str, str], SecretStr]:
    """Check every auth entry that is valid on its own, so its problems show with all others."""
    out: dict[tuple[str, str], SecretStr] = {}
    raw_auths = raw.get("auths")
    if not isinstance(raw_auths, dict):
        return out
    for name, data in raw_auths.items():
        if not isinstance(data, dict):
            continue
        try:
            auth = _AUTH_ADAPTER.validate_python(data)
        except ValidationError:
            continue  # reported by the whole-file validation
        out.update(_check_auth(problems, base, str(name), data, auth))
    return out


# ---------------------------------------------------------------- rules between sections


def _items(raw: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    value = raw.get(section)
    if not isinstance(value, list):
        return []
    return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)]


def _mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _duplicates(problems: _Problems, raw: dict[str, Any], section: str, what: str) -> set[Any]:
    seen: set[Any] = set()
    for i, item in _items(raw, section):
        ident = item.get("id")
        if not isinstance(ident, str):
            continue  # missing or not text: reported by the model
        if ident in seen:
            problems.add((section, i, "id"), f"duplicate {what} id {ident!r}")
        seen.add(ident)
    return seen


def _check_references(problems: _Problems, raw: dict[str, Any]) -> None:
    """Ids are unique; sites, communes, profiles and auths that are named exist and fit."""
    communes = _duplicates(problems, raw, "communes", "commune")
    sites = _duplicates(problems, raw, "sites", "site")
    for i, s in _items(raw, "sites"):
        commune = s.get("commune")
        # without a communes: section any commune slug is accepted
        if communes and isinstance(commune, str) and commune not in communes:
            problems.add(("sites", i, "commune"), f"unknown commune {commune!r}")
    auths = _mapping(raw, "auths")
    profiles = _mapping(raw, "profiles")
    defaults = _mapping(raw, "defaults")

    def profile_problem(name: Any, kind: str) -> str | None:
        if not isinstance(name, str):
            return None
        if name not in profiles:
            return f"unknown profile {name!r}"
        got = profiles[name].get("kind") if isinstance(profiles[name], dict) else None
        if isinstance(got, str) and got in _PROFILE_CLASSES and got != kind:
            return f"profile {name!r} is for kind {got!r}, not {kind!r}"
        return None

    def auth_problem(name: Any, kind: str) -> str | None:
        if not isinstance(name, str):
            return None
        if name not in auths:
            return f"unknown auth {name!r}"
        want = "onvif" if kind == "camera" else "snmp"
        got = auths[name].get("type") if isinstance(auths[name], dict) else None
        if isinstance(got, str) and got in _SECRET_PREFIXES and got != want:
            return f"auth {name!r} is of type {got!r}; {kind}s need type {want!r}"
        return None

    for kind in ("camera", "ap"):
        for key, check in ((f"{kind}_profile", profile_problem), (f"{kind}_auth", auth_problem)):
            message = check(defaults.get(key), kind)
            if message:
                problems.add(("defaults", key), message)

    def _profile_port(d: dict[str, Any], kind: str) -> Any:
        if kind != "ap":
            return None
        name = d.get("profile") or defaults.get("ap_profile")
        prof = profiles.get(name) if isinstance(name, str) else None
        snmp = prof.get("snmp") if isinstance(prof, dict) else None
        return snmp.get("port") if isinstance(snmp, dict) else None

    device_sections = (("cameras", "camera", "onvif_port"), ("aps", "ap", "snmp_port"))
    ids: dict[Any, str] = {}
    endpoints: dict[tuple[Any, ...], Any] = {}
    for section, kind, port_key in device_sections:
        for i, d in _items(raw, section):
            loc: tuple[Any, ...] = (section, i)
            did = d.get("id")
            if isinstance(did, str) and did in ids:
                problems.add((*loc, "id"), f"duplicate device id {did!r} (also used in {ids[did]})")
            elif isinstance(did, str):
                ids[did] = section
            site = d.get("site")
            if isinstance(site, str) and site not in sites:
                problems.add((*loc, "site"), f"unknown site {site!r}")
            message = profile_problem(d.get("profile"), kind)
            if message:
                problems.add((*loc, "profile"), message)
            if d.get("auth") is not None:
                message = auth_problem(d.get("auth"), kind)
                if message:
                    problems.add((*loc, "auth"), message)
            elif defaults.get(f"{kind}_auth") is None:
                problems.add((*loc, "auth"), f"no auth here and no defaults.{kind}_auth")
            address = d.get("address")
            # the port the device is polled on: its own, its profile's snmp.port, the default
            port_given = d.get(port_key) or _profile_port(d, kind) or defaults.get(port_key)
            if isinstance(address, str) and _is_host(address.strip()) and (
                port_given is None or type(port_given) is int
            ):
                # never echo an address that failed validation: it may carry user:password@
                port = port_given or DefaultsConfig.model_fields[port_key].default
                endpoint = (address.strip(), kind, port)
                if endpoint in endpoints:
                    problems.add(
                        (*loc, "address"),
                        f"{address.strip()} port {port} is already used by {kind} "
                        f"{endpoints[endpoint]!r}",
                    )
                else:
                    endpoints[endpoint] = did


def _check_timeouts(problems: _Problems, raw: dict[str, Any]) -> None:
    """Each check's timeout is shorter than its interval (defaults taken from the models)."""
    for name, prof in _mapping(raw, "profiles").items():
        if not isinstance(prof, dict) or not isinstance(prof.get("kind"), str):
            continue
        if prof["kind"] not in _PROFILE_CLASSES:
            continue
        model = _PROFILE_CLASSES[prof["kind"]]
        for check, field in model.model_fields.items():
            settings_cls = field.annotation
            settings = prof.get(check)
            if not isinstance(settings, dict):
                continue
            if not (isinstance(settings_cls, type) and issubclass(settings_cls, CheckSettings)):
                continue
            fields = settings_cls.model_fields
            try:
                interval = parse_duration(settings.get("interval", fields["interval"].default))
                timeout = parse_duration(settings.get("timeout", fields["timeout"].default))
            except ValueError:
                continue  # reported by the model
            if timeout >= interval:
                key = "timeout" if "timeout" in settings else "interval"
                problems.add(
                    ("profiles", name, check, key),
                    f"timeout ({timeout:g}s) must be shorter than interval ({interval:g}s)",
                )


# ---------------------------------------------------------------- entry points


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}:0: (file): not UTF-8 text"]) from None
    except OSError as e:
        raise ConfigError([f"{path}:0: (file): cannot read: {e.strerror or e}"]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> LoadedConfig:
    """Validate config text that came from `path` (used for messages and relative files)."""
    try:
        return _parse_config(text, path)
    except RecursionError:
        # PyYAML's composer and the checks below recurse: `[[[[…]]]]` a thousand deep would
        # escape as a traceback (and a reload as an HTTP 500 with the old config's metric 1).
        raise ConfigError([f"{path}:1: (yaml): values nested too deeply"]) from None


def _parse_config(text: str, path: Path) -> LoadedConfig:
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        if node is not None and _too_many_nodes(node):
            raise ConfigError([f"{path}:1: (yaml): more than {MAX_YAML_NODES} values once "
                               "aliases are expanded; write the inventory out"])
        raw = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        # `from None`, and no snippet of the line: the offending line may hold a password.
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        what = e.problem or e.context or "cannot parse"
        if e.problem and e.context:
            where = e.context_mark.line + 1 if e.context_mark else line
            what += f" ({e.context} on line {where})" if where != line else f" ({e.context})"
        raise ConfigError([f"{path}:{line}: (yaml): syntax error: {what}"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{path}:0: (yaml): cannot parse the file"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError([f"{path}:{line}: (top): must be a mapping of sections (server, sites, ...)"])
    lines: dict[tuple[Any, ...], int] = {}
    dupes: list[tuple[int, tuple[Any, ...]]] = []
    if node is not None:
        _compose_lines(node, (), lines)
        _duplicate_keys(node, (), dupes)
    problems = _Problems(path, lines)
    for line, loc in dupes:
        problems.add(loc, "duplicate key (the last one would win)", line=line)
    config = _model_problems(problems, raw)
    _check_references(problems, raw)
    _check_timeouts(problems, raw)
    secrets = _resolve_secrets(problems, path.parent, raw)
    if problems.items or config is None:
        raise ConfigError(problems.render())
    return LoadedConfig(path=path, config=config, secrets=secrets)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
