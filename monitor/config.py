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
from pydantic import Field, SecretStr, ValidationError, field_validator

from probes.base import Credentials, StrictModel, Target
from probes.onvif import OnvifSettings
from probes.ping import PingSettings
from probes.rtsp import RtspSettings
from probes.snmp import SnmpSettings

DEFAULT_CONFIG = Path("config/camnet.yaml")

ID_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
Ident = Annotated[str, Field(pattern=ID_RE)]
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels the exporter sets itself; a device's `labels:` may not override them.
RESERVED_LABELS = frozenset(
    {"commune", "site", "camera", "ap", "operator", "problem", "interface", "radio", "direction",
     "kind", "check", "reason", "job", "instance"}
)


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds every FILE:LINE: key.path: message line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- secrets


class OnvifAuth(StrictModel):
    """Camera credentials for ONVIF (WS-Security digest) and RTSP (digest/basic)."""

    type: Literal["onvif"]
    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    rtsp_username: str | None = None
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
    username: str | None = None
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
        return str(v) if isinstance(v, int) else v


Auth = Annotated[OnvifAuth | SnmpAuth, Field(discriminator="type")]

# Which secret prefixes each auth type has, and when each is required.
_SECRET_PREFIXES: dict[str, tuple[str, ...]] = {
    "onvif": ("password", "rtsp_password"),
    "snmp": ("community", "auth_password", "priv_password"),
}


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


def _check_host(v: str) -> str:
    host = v.strip()
    if not host or any(c in host for c in "/@ \t"):
        raise ValueError(f"{v!r} is not a host name or IP address")
    return host


class DeviceConfig(StrictModel):
    """Fields shared by cameras and access points."""

    id: Ident
    site: Ident
    address: str
    profile: Ident | None = None
    auth: Ident | None = None
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    _host = field_validator("address")(classmethod(lambda cls, v: _check_host(v)))

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not LABEL_NAME_RE.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by camnet and cannot be overridden")
        return v


class CameraConfig(DeviceConfig):
    """A camera: ONVIF endpoint and, optionally, fixed RTSP/snapshot URIs."""

    onvif_port: int | None = Field(default=None, ge=1, le=65535)
    rtsp_url: str | None = None
    snapshot_url: str | None = None

    @field_validator("rtsp_url")
    @classmethod
    def _rtsp_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError("must be an rtsp:// or rtsps:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("credentials do not belong in the URL; put them in an onvif auth")
        return v


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


class ServerConfig(StrictModel):
    """The HTTP listener for /metrics, /healthz, /probe and /-/reload."""

    listen: str = "127.0.0.1:9830"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not HOST:PORT")
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
    defaults: DefaultsConfig = DefaultsConfig()
    communes: list[CommuneConfig] = Field(default_factory=list)
    sites: list[SiteConfig] = Field(default_factory=list)
    auths: dict[Ident, Auth] = Field(default_factory=dict)
    profiles: dict[Ident, Profile] = Field(default_factory=dict)
    cameras: list[CameraConfig] = Field(default_factory=list)
    aps: list[ApConfig] = Field(default_factory=list)


@dataclass
class LoadedConfig:
    """A validated config with secrets resolved and lookups ready."""

    path: Path
    config: Config
    secrets: dict[tuple[str, str], SecretStr]

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

    def auth_for(self, device: CameraConfig | ApConfig) -> OnvifAuth | SnmpAuth | None:
        """The device's auth, or the default one for its kind."""
        d = self.config.defaults
        name = device.auth or (d.camera_auth if isinstance(device, CameraConfig) else d.ap_auth)
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
            options["snapshot_url"] = device.snapshot_url
        else:
            options["snmp_port"] = device.snmp_port or self.config.defaults.snmp_port
        return Target(device.id, kind, device.address, labels, creds, options)


# ---------------------------------------------------------------- YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping value and sequence item."""


def _compose_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, (*path, i), lines)


def _duplicate_keys(node: yaml.Node, path: str, out: list[tuple[int, str, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            if key in seen:
                out.append((key_node.start_mark.line + 1, where, "duplicate key"))
            seen.add(key)
            _duplicate_keys(value_node, where, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}[{i}]", out)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


class _Problems:
    """Collects problems with their line numbers, in file order."""

    def __init__(self, path: Path, lines: dict[tuple[Any, ...], int]) -> None:
        self.path = path
        self.lines = lines
        self.items: list[tuple[int, str, str]] = []

    def line_of(self, loc: tuple[Any, ...]) -> int:
        loc = tuple(loc)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def add(self, loc: tuple[Any, ...], message: str, line: int | None = None) -> None:
        self.items.append((line or self.line_of(loc), _dotted(loc), message))

    def render(self) -> list[str]:
        seen: set[tuple[int, str, str]] = set()
        out = []
        for item in sorted(self.items, key=lambda t: t[0]):
            if item not in seen:
                seen.add(item)
                out.append(f"{self.path}:{item[0]}: {item[1]}: {item[2]}")
        return out


def _pydantic_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop union tags (`onvif`, `camera`, `function-after[...]`) that are not keys of the data."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict | list):
            # a key the data does not have: keep it only if it is the last (missing field)
            if part == loc[-1] and isinstance(part, str) and "[" not in part:
                out.append(part)
            continue
        else:
            break
    return tuple(out)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"must be one of {err['ctx']['expected_tags']} (got {err['ctx']['tag']!r})"
    if kind == "union_tag_not_found":
        return f"key {err['ctx']['discriminator']} is required"
    if kind == "string_pattern_mismatch":
        return "must be lower-case letters, digits, '-', '_' or '.' (at most 63)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _read_secret(
    problems: _Problems, base: Path, loc: tuple[Any, ...], raw: dict[str, Any], prefix: str
) -> SecretStr | None:
    given = [k for k in (prefix, f"{prefix}_file", f"{prefix}_env") if raw.get(k) is not None]
    if len(given) > 1:
        problems.add((*loc, given[1]), f"give only one of {', '.join(given)}")
        return None
    if not given:
        return None
    key = given[0]
    value = raw[key]
    if key == prefix:
        return SecretStr(str(value))
    if key.endswith("_file"):
        file = Path(str(value))
        if not file.is_absolute():
            file = base / file
        try:
            text = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            problems.add((*loc, key), f"cannot read secret file {file}: {e.strerror or e}")
            return None
        if not text:
            problems.add((*loc, key), f"secret file {file} is empty")
            return None
        return SecretStr(text)
    env = os.environ.get(str(value))
    if env is None or env == "":
        problems.add((*loc, key), f"environment variable {value} is not set")
        return None
    return SecretStr(env)


def _resolve_secrets(
    problems: _Problems, base: Path, config: Config, raw: dict[str, Any]
) -> dict[tuple[str, str], SecretStr]:
    out: dict[tuple[str, str], SecretStr] = {}
    raw_auths = raw.get("auths") or {}
    for name, auth in config.auths.items():
        loc: tuple[Any, ...] = ("auths", name)
        data = raw_auths.get(name, {})
        for prefix in _SECRET_PREFIXES[auth.type]:
            secret = _read_secret(problems, base, loc, data, prefix)
            if secret is not None:
                out[(name, prefix)] = secret
        if isinstance(auth, OnvifAuth) and (name, "password") not in out:
            if not any(data.get(k) for k in ("password", "password_file", "password_env")):
                problems.add(loc, "needs password, password_file or password_env")
        if isinstance(auth, SnmpAuth):
            if auth.version in ("1", "2c") and (name, "community") not in out:
                if not any(data.get(k) for k in ("community", "community_file", "community_env")):
                    problems.add(loc, f"SNMP v{auth.version} needs community, community_file or community_env")
            if auth.version == "3":
                if not auth.username:
                    problems.add((*loc, "username"), "SNMP v3 needs a username")
                needs = []
                if auth.security_level in ("authNoPriv", "authPriv"):
                    needs.append("auth_password")
                if auth.security_level == "authPriv":
                    needs.append("priv_password")
                for prefix in needs:
                    present = any(data.get(k) for k in (prefix, f"{prefix}_file", f"{prefix}_env"))
                    if not present:
                        problems.add(loc, f"security_level {auth.security_level} needs {prefix} (or {prefix}_file, {prefix}_env)")
                    secret = out.get((name, prefix))
                    if secret is not None and len(secret.get_secret_value()) < 8:
                        problems.add((*loc, prefix), "SNMP v3 passphrases must have at least 8 characters")
    return out


def _cross_checks(problems: _Problems, raw: dict[str, Any]) -> None:
    """Rules between sections, on the raw data so they run even when a model failed."""

    def items(section: str) -> list[tuple[int, dict[str, Any]]]:
        value = raw.get(section)
        if not isinstance(value, list):
            return []
        return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)]

    def mapping(section: str) -> dict[str, Any]:
        value = raw.get(section)
        return value if isinstance(value, dict) else {}

    communes = {c.get("id") for _, c in items("communes")}
    site_ids: set[Any] = set()
    for i, s in items("sites"):
        if s.get("id") in site_ids:
            problems.add(("sites", i, "id"), f"duplicate site id {s.get('id')!r}")
        site_ids.add(s.get("id"))
        if communes and s.get("commune") is not None and s.get("commune") not in communes:
            problems.add(("sites", i, "commune"), f"unknown commune {s.get('commune')!r} (not in communes)")
    seen_ids: dict[Any, str] = {}
    for i, c in items("communes"):
        if sum(1 for _, o in items("communes") if o.get("id") == c.get("id")) > 1:
            problems.add(("communes", i, "id"), f"duplicate commune id {c.get('id')!r}")
    auths = mapping("auths")
    profiles = mapping("profiles")
    defaults = mapping("defaults")
    want_kind = {"cameras": "camera", "aps": "ap"}
    want_auth = {"cameras": "onvif", "aps": "snmp"}
    for key in ("camera_profile", "ap_profile"):
        name = defaults.get(key)
        if name is not None and name not in profiles:
            problems.add(("defaults", key), f"unknown profile {name!r}")
        elif name is not None and isinstance(profiles[name], dict):
            kind = profiles[name].get("kind")
            if kind and kind != key.split("_")[0]:
                problems.add(("defaults", key), f"profile {name!r} is for kind {kind!r}")
    for key in ("camera_auth", "ap_auth"):
        name = defaults.get(key)
        if name is not None and name not in auths:
            problems.add(("defaults", key), f"unknown auth {name!r}")
    endpoints: dict[tuple[Any, ...], str] = {}
    for section in ("cameras", "aps"):
        for i, d in items(section):
            loc: tuple[Any, ...] = (section, i)
            did = d.get("id")
            if did in seen_ids:
                problems.add((*loc, "id"), f"duplicate device id {did!r} (also in {seen_ids[did]})")
            else:
                seen_ids[did] = section
            if d.get("site") is not None and d.get("site") not in site_ids:
                problems.add((*loc, "site"), f"unknown site {d.get('site')!r}")
            prof = d.get("profile") or defaults.get(f"{want_kind[section]}_profile")
            if d.get("profile") is not None and d.get("profile") not in profiles:
                problems.add((*loc, "profile"), f"unknown profile {d.get('profile')!r}")
            elif prof in profiles and isinstance(profiles[prof], dict):
                kind = profiles[prof].get("kind")
                if kind and kind != want_kind[section]:
                    problems.add((*loc, "profile"), f"profile {prof!r} is for kind {kind!r}, not {want_kind[section]!r}")
            auth = d.get("auth") or defaults.get(f"{want_kind[section]}_auth")
            if d.get("auth") is not None and d.get("auth") not in auths:
                problems.add((*loc, "auth"), f"unknown auth {d.get('auth')!r}")
            elif auth is None:
                problems.add(loc, f"no auth: set auth: here or defaults.{want_kind[section]}_auth")
            elif isinstance(auths.get(auth), dict):
                atype = auths[auth].get("type")
                if atype and atype != want_auth[section]:
                    problems.add((*loc, "auth"), f"auth {auth!r} is of type {atype!r}, {section} need {want_auth[section]!r}")
            port_key = "onvif_port" if section == "cameras" else "snmp_port"
            port = d.get(port_key) or defaults.get(port_key)
            endpoint = (d.get("address"), section, port)
            if d.get("address") is not None:
                if endpoint in endpoints:
                    problems.add((*loc, "address"), f"address {d.get('address')}:{port} is already used by {endpoints[endpoint]}")
                else:
                    endpoints[endpoint] = str(did)
    for name, prof in profiles.items():
        if not isinstance(prof, dict):
            continue
        for check, settings in prof.items():
            if not isinstance(settings, dict):
                continue
            try:
                from probes.base import parse_duration

                interval = parse_duration(settings.get("interval", 30 if check != "onvif" else 60))
                timeout = parse_duration(settings.get("timeout", 10))
            except ValueError:
                continue
            if timeout >= interval:
                problems.add(("profiles", name, check, "timeout"),
                             f"timeout {timeout:g}s must be shorter than interval {interval:g}s")


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}:0: (file): cannot read: {e.strerror or e}"]) from e
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> LoadedConfig:
    """Validate config text that came from `path` (used for messages and relative files)."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError([f"{path}:{line}: (yaml): syntax error: {what}"]) from e
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}:0: (yaml): {e}"]) from e
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    problems = _Problems(path, lines)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}:1: (top): the file must be a mapping of sections"])
    dupes: list[tuple[int, str, str]] = []
    if node is not None:
        _duplicate_keys(node, "", dupes)
    for line, where, msg in dupes:
        problems.items.append((line, where, msg))
    _cross_checks(problems, raw)
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            loc = _pydantic_loc(tuple(err["loc"]), raw)
            problems.add(loc, _message(err))
    secrets: dict[tuple[str, str], SecretStr] = {}
    if config is not None:
        secrets = _resolve_secrets(problems, path.parent, config, raw)
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
