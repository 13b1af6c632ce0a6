"""Config validation: the invalid-file table, secrets, relative paths, check-config CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from monitor import config as config_module
from monitor.config import (
    DEFAULT_CONFIG,
    REDACTED,
    ApConfig,
    CameraConfig,
    Config,
    ConfigError,
    LoadedConfig,
    OnvifAuth,
    SnmpAuth,
    load_config,
    parse_config,
    redacted_dump,
)
from probes.base import CheckSettings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "config"
CASES = sorted(p.name for p in DATA.glob("*.yaml"))
# Variables the table's *_env cases name; they must be unset for the expected output.
UNSET_ENV = ("CAMNET_TEST_UNSET_COMMUNITY", "CAMNET_TEST_UNSET_PASSWORD", "CAMNET_TEST_UNSET_PRIV")
LINE_RE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def _env_without_test_vars() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _check_config(
    path: Path | str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(path)],
        cwd=cwd, env=env or _env_without_test_vars(), capture_output=True, text=True, timeout=60,
    )


# ---------------------------------------------------------------- the invalid-file table


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 25
    for name in CASES:
        assert (DATA / name).with_suffix(".expected").is_file(), f"{name} has no .expected"


@pytest.mark.parametrize("name", CASES)
def test_invalid_config(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in UNSET_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(DATA)
    expected = (DATA / name).with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    with pytest.raises(ConfigError) as e:
        load_config(name)
    assert e.value.problems == expected
    # every line has the documented shape and the lines are sorted
    numbers = []
    for line in e.value.problems:
        m = LINE_RE.match(line)
        assert m, line
        assert m["file"] == name
        numbers.append(int(m["line"]))
    assert numbers == sorted(numbers)


def test_line_numbers_point_at_the_offending_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Independent of the .expected files: each reported line holds the key named last."""
    monkeypatch.chdir(DATA)
    for var in UNSET_ENV:
        monkeypatch.delenv(var, raising=False)
    checked = 0
    for name in CASES:
        text = (DATA / name).read_text(encoding="utf-8").splitlines()
        try:
            load_config(name)
        except ConfigError as e:
            for problem in e.problems:
                m = LINE_RE.match(problem)
                assert m
                last = re.split(r"[.\[]", m["path"])[-1].rstrip("]").removesuffix(":...")
                line = text[int(m["line"]) - 1]
                if "required key is missing" in problem or "needs" in problem or last.isdigit():
                    continue  # missing keys point at their parent's line
                if m["path"].startswith("("):
                    continue
                if "no auth here" in problem:
                    continue
                key = last.removesuffix("=...") + ("=" if last.endswith("=...") else ":")
                assert key in line, f"{problem!r} vs line {line!r}"
                checked += 1
    assert checked > 40


def test_check_config_cli_prints_problems_and_exits_1() -> None:
    # duration_not_finite: an integer of 400 digits overflowed float() and ended in a traceback.
    # flow_key_typo: `{password:x}` is one key in YAML, which the error showed whole.
    for name in ("many_problems.yaml", "yaml_syntax_error.yaml", "rtsp_url_credentials.yaml",
                 "duration_not_finite.yaml", "flow_key_typo.yaml"):
        proc = _check_config(name, DATA)
        assert proc.returncode == 1, proc.stderr
        expected = (DATA / name).with_suffix(".expected").read_text(encoding="utf-8")
        assert proc.stdout == expected
        assert "INVALID" in proc.stderr
        assert "Typo-Secret" not in proc.stdout + proc.stderr


def test_check_config_cli_accepts_the_default_config() -> None:
    proc = _check_config(DEFAULT_CONFIG, ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"{DEFAULT_CONFIG}: OK (37 sites, 24 cameras, 37 access points")


def test_check_config_cli_missing_file(tmp_path: Path) -> None:
    proc = _check_config(tmp_path / "nope.yaml", tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == f"{tmp_path / 'nope.yaml'}:0: (file): cannot read: No such file or directory\n"


# ---------------------------------------------------------------- the default config


def test_default_config_shape() -> None:
    loaded = load_config(ROOT / DEFAULT_CONFIG)
    assert len(loaded.config.cameras) == 24
    assert len(loaded.config.aps) == 37
    assert {c.id for c in loaded.config.communes} == {"daron", "tutra", "lacxuan"}
    cam = loaded.target(loaded.config.cameras[0])
    assert cam.id == "cam-daron-01"
    assert cam.labels == {"commune": "daron", "site": "daron-01", "camera": "cam-daron-01",
                          "operator": "vnpt"}
    assert cam.options["onvif_port"] == 8080
    assert cam.auth is not None and cam.auth.secret("password")
    ap = loaded.device("ap-tutra-01")
    assert isinstance(ap, ApConfig)
    target = loaded.target(ap)
    assert target.auth is not None and isinstance(target.auth.config, SnmpAuth)
    assert target.auth.config.version == "3"
    assert target.auth.secret("auth_password") and target.auth.secret("priv_password")
    assert target.options["snmp_port"] == 1161
    assert loaded.device("nope") is None
    assert loaded.config.server.host_port == ("127.0.0.1", 9830)


# ---------------------------------------------------------------- secrets

SECRETS = {
    "password": "S3cret-Onvif-Pass",
    "rtsp": "S3cret-Rtsp-Pass",
    "community": "S3cret-Community",
    "auth_file": "S3cret-V3-AuthKey",
    "priv_env": "S3cret-V3-PrivKey",
    "community_env": "S3cret-Env-Community",
}
SHORT = "Sh0rt!x"


def _secret_config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "v3.auth").write_text(SECRETS["auth_file"] + "\n", encoding="utf-8")
    path = tmp_path / "camnet.yaml"
    path.write_text(textwrap.dedent(f"""\
        sites:
          - {{id: daron-01, commune: daron, name: "Nhà văn hóa thôn 01"}}
        auths:
          cam:
            type: onvif
            username: admin
            password: {SECRETS["password"]}
            rtsp_username: viewer
            rtsp_password: {SECRETS["rtsp"]}
          v2c:
            type: snmp
            community: {SECRETS["community"]}
          v2c-env:
            type: snmp
            community_env: CAMNET_TEST_COMMUNITY
          v3:
            type: snmp
            version: 3
            username: camnet
            auth_password_file: keys/v3.auth
            priv_password_env: CAMNET_TEST_PRIV
        defaults: {{camera_auth: cam, ap_auth: v2c}}
        cameras:
          - {{id: cam-01, site: daron-01, address: 127.0.2.1}}
        aps:
          - {{id: ap-01, site: daron-01, address: 127.0.1.1}}
          - {{id: ap-02, site: daron-01, address: 127.0.1.2, auth: v3}}
          - {{id: ap-03, site: daron-01, address: 127.0.1.3, auth: v2c-env}}
        """) + extra, encoding="utf-8")
    return path


def _secret_env() -> dict[str, str]:
    env = _env_without_test_vars()
    env["CAMNET_TEST_PRIV"] = SECRETS["priv_env"]
    env["CAMNET_TEST_COMMUNITY"] = SECRETS["community_env"]
    return env


def _assert_no_secret(text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"secret {name} leaked"
    assert "hunter2" not in text
    assert SHORT not in text


def test_secrets_resolve_and_never_print(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _secret_config(tmp_path)
    for k, v in _secret_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(ROOT)  # not the config's directory: keys/v3.auth is relative to the file
    loaded = load_config(path)
    targets = {d.id: loaded.target(d) for d in loaded.devices}
    cam = targets["cam-01"].auth
    assert cam is not None
    assert cam.secret("password") == SECRETS["password"]
    assert cam.secret("rtsp_password") == SECRETS["rtsp"]
    assert targets["ap-01"].auth is not None
    assert targets["ap-01"].auth.secret("community") == SECRETS["community"]
    assert targets["ap-03"].auth is not None
    assert targets["ap-03"].auth.secret("community") == SECRETS["community_env"]
    v3 = targets["ap-02"].auth
    assert v3 is not None
    assert v3.secret("auth_password") == SECRETS["auth_file"]  # trailing newline stripped
    assert v3.secret("priv_password") == SECRETS["priv_env"]
    assert str(SecretStr("x")) == "**********"
    rendered = [repr(loaded), str(loaded), repr(loaded.config), str(loaded.config),
                *(repr(t) for t in targets.values()), *(str(t) for t in targets.values()),
                json.dumps(redacted_dump(loaded)),
                *(json.dumps(redacted_dump(loaded, d)) for d in targets)]
    for text in rendered:
        _assert_no_secret(text)
    # the check-config summary of a valid file
    proc = _check_config(path, tmp_path, env=_secret_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_no_secret(proc.stdout + proc.stderr)


def test_secrets_absent_from_problems(tmp_path: Path) -> None:
    # invalid neighbours of every secret, including secrets in places they do not belong
    bad = textwrap.indent(textwrap.dedent(f"""\
          - id: cam-02
            site: daron-01
            address: admin:{SECRETS["password"]}@127.0.2.2
            rtsp_url: rtsp://admin:{SECRETS["rtsp"]}@127.0.2.2/live
            picture_url: rtsp://admin:{SECRETS["rtsp"]}@127.0.2.2/sub
            snapshot_url: http://admin:{SECRETS["password"]}@127.0.2.2/snap.jpg
            auth: v3
            labels: {{bad-name: "{SECRETS["community"]}", floor: 2}}
          - {{id: cam-03, site: daron-01, address: "{SECRETS["community"]}:{SECRETS["password"]}@h"}}
          - {{id: cam-04, site: daron-01, address: "rtsp://u:hunter2@127.0.2.4/"}}
        """), "  ")
    path = _secret_config(tmp_path)
    text = path.read_text(encoding="utf-8")
    text = text.replace("cameras:\n", "cameras:\n" + bad)
    # a too-short v3 passphrase, a number where a secret belongs, and two sources at once
    text = text.replace("auth_password_file: keys/v3.auth", f"auth_password: {SHORT}")
    text = text.replace(f"rtsp_password: {SECRETS['rtsp']}", "rtsp_password: 12345678")
    text = text.replace("community_env: CAMNET_TEST_COMMUNITY",
                        f"community_env: CAMNET_TEST_COMMUNITY\n    community: {SECRETS['community']}")
    path.write_text(text, encoding="utf-8")
    proc = _check_config(path, tmp_path, env=_secret_env())
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    _assert_no_secret(out)
    assert SHORT not in out and "12345678" not in out
    # the problems are there, just without their values
    assert f"{path}:" in proc.stdout
    for expected in (
        "cameras[0].address: must be a host name",
        "cameras[0].rtsp_url: must not contain credentials",
        "cameras[0].picture_url: must not contain credentials",
        "cameras[0].snapshot_url: must not contain credentials",
        "cameras[0].labels.bad-name: is not a valid Prometheus label name",
        "cameras[1].address: must be a host name",
        "cameras[2].address: must be a host name",
        "auths.v3.auth_password: SNMP v3 passphrases need at least 8 characters",
        "auths.cam.rtsp_password: must be a string (quote it)",
        "auths.v2c-env.community_env: give only one of community, community_env",
    ):
        assert expected in proc.stdout
    with pytest.raises(ConfigError) as e:
        parse_config(text, path)
    _assert_no_secret(str(e.value) + repr(e.value))


def test_yaml_error_on_a_secret_line_does_not_echo_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f'auths:\n  cam:\n    type: onvif\n    password: "{SECRETS["password"]}\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    _assert_no_secret(str(e.value))
    assert e.value.problems[0].startswith(f"{path}:5: (yaml): syntax error:")


def test_redacted_dump_shows_secret_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in _secret_env().items():
        monkeypatch.setenv(k, v)
    loaded = load_config(_secret_config(tmp_path))
    dump = redacted_dump(loaded)
    assert dump["auths"]["cam"]["password"] == REDACTED
    assert dump["auths"]["cam"]["rtsp_password"] == REDACTED
    assert dump["auths"]["v2c"]["community"] == REDACTED
    assert dump["auths"]["v3"]["auth_password_file"] == "keys/v3.auth"  # a path is no secret
    assert dump["auths"]["v3"]["priv_password_env"] == "CAMNET_TEST_PRIV"
    assert dump["auths"]["v2c-env"]["community"] is None
    assert len(dump["cameras"]) == 1
    one = redacted_dump(loaded, "ap-02")
    assert one["kind"] == "ap" and one["auth_name"] == "v3"
    assert one["profile"]["snmp"]["interval"] == 30.0
    json.dumps(dump)  # plain data
    with pytest.raises(KeyError):
        redacted_dump(loaded, "nope")


# ---------------------------------------------------------------- relative paths, env, edge cases


def test_password_file_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "camnet"
    (conf / "secrets").mkdir(parents=True)
    (conf / "secrets" / "cam.password").write_text("from-the-config-dir\r\n", encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    (elsewhere / "secrets").mkdir(parents=True)
    (elsewhere / "secrets" / "cam.password").write_text("from-the-cwd\n", encoding="utf-8")
    (tmp_path / "abs.password").write_text("absolute\n", encoding="utf-8")
    (conf / "camnet.yaml").write_text(textwrap.dedent(f"""\
        auths:
          rel: {{type: onvif, username: a, password_file: secrets/cam.password}}
          abs: {{type: onvif, username: a, password_file: {tmp_path / "abs.password"}}}
        """), encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    loaded = load_config(conf / "camnet.yaml")
    assert loaded.secret(loaded.config.auths["rel"], "password") == SecretStr("from-the-config-dir")
    assert loaded.secret(loaded.config.auths["abs"], "password") == SecretStr("absolute")
    # a relative config path works the same
    monkeypatch.chdir(tmp_path)
    loaded = load_config(Path("etc/camnet/camnet.yaml"))
    secret = loaded.secret(loaded.config.auths["rel"], "password")
    assert secret is not None and secret.get_secret_value() == "from-the-config-dir"


def test_secret_file_saved_by_notepad_loses_its_bom(tmp_path: Path) -> None:
    (tmp_path / "cam.password").write_bytes(b"\xef\xbb\xbfNotepad-Passw0rd\r\n")
    (tmp_path / "camnet.yaml").write_text(
        "auths: {cam: {type: onvif, username: a, password_file: cam.password}}\n", encoding="utf-8")
    loaded = load_config(tmp_path / "camnet.yaml")
    assert loaded.secret(loaded.config.auths["cam"], "password") == SecretStr("Notepad-Passw0rd")


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(ConfigError) as e:
        parse_config("\n".join(lines) + "\n", tmp_path / "c.yaml")
    assert e.value.problems == [
        f"{tmp_path / 'c.yaml'}:1: (yaml): more than 200000 values once aliases are expanded; "
        "write the inventory out"
    ]


def test_empty_sections_and_minimal_configs(tmp_path: Path) -> None:
    loaded = parse_config("", tmp_path / "c.yaml")
    assert loaded.devices == []
    loaded = parse_config("aps:\ncameras:\nserver:\n  listen: '[::1]:9830'\n", tmp_path / "c.yaml")
    assert loaded.devices == [] and loaded.config.server.host_port == ("::1", 9830)
    loaded = parse_config("server: {listen: ':9830'}\n", tmp_path / "c.yaml")
    assert loaded.config.server.host_port == ("0.0.0.0", 9830)


def test_device_without_profile_uses_builtin_defaults(tmp_path: Path) -> None:
    loaded = parse_config(textwrap.dedent("""\
        sites: [{id: s, commune: c, name: S}]
        auths: {cam: {type: onvif, username: u, password: p}}
        cameras: [{id: c1, site: s, address: cam.example, auth: cam, name: Gate,
                   rtsp_url: "rtsp://cam.example:554/h264", labels: {zone: gate}}]
        """), tmp_path / "c.yaml")
    cam = loaded.device("c1")
    assert isinstance(cam, CameraConfig)
    assert loaded.profile_for(cam).kind == "camera"
    auth = loaded.auth_for(cam)
    assert isinstance(auth, OnvifAuth)
    target = loaded.target(cam)
    assert target.labels == {"commune": "c", "site": "s", "camera": "c1", "zone": "gate"}
    assert target.options == {"name": "Gate", "onvif_port": 80, "snapshot_url": None,
                              "rtsp_url": "rtsp://cam.example:554/h264", "picture_url": None}


def test_loaded_config_repr_is_short(tmp_path: Path) -> None:
    loaded = LoadedConfig(tmp_path / "x.yaml", parse_config("", tmp_path / "x.yaml").config, {})
    path = str(tmp_path / "x.yaml")
    assert repr(loaded) == f"LoadedConfig(path={path!r}, sites=0, cameras=0, aps=0, auths=[])"


# Random YAML made of the config's own vocabulary: the loader must never crash, only report.
_KEYS = st.sampled_from([
    "server", "listen", "defaults", "communes", "sites", "auths", "profiles", "cameras", "aps",
    "id", "site", "commune", "name", "address", "auth", "profile", "labels", "type", "kind",
    "onvif", "snmp", "ping", "rtsp", "interval", "timeout", "version", "password",
    "password_file", "password_env", "community", "username", "security_level", "camera_auth",
])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=8),
                     st.sampled_from(["onvif", "snmp", "camera", "ap", "3", "2c", "10s", "0",
                                      "127.0.0.1:1", "a@b", "rtsp://u:p@h/"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _VALUES, max_size=5))
def test_random_configs_never_crash(data: dict[str, object]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        parse_config(text, Path("r.yaml"))
    except ConfigError as e:
        assert e.problems
        for line in e.problems:
            assert LINE_RE.match(line), line


def test_snmp_port_precedence(tmp_path: Path) -> None:
    loaded = parse_config(textwrap.dedent("""\
        sites: [{id: s, commune: c, name: S}]
        auths: {v2c: {type: snmp, community: public}}
        defaults: {ap_auth: v2c, snmp_port: 1161}
        profiles:
          plain: {kind: ap}
          port-in-profile: {kind: ap, snmp: {port: 2161}}
        aps:
          - {id: a1, site: s, address: 127.0.1.1, profile: plain}
          - {id: a2, site: s, address: 127.0.1.2, profile: port-in-profile}
          - {id: a3, site: s, address: 127.0.1.3, profile: port-in-profile, snmp_port: 3161}
        """), tmp_path / "c.yaml")
    ports = {d.id: loaded.target(d).options["snmp_port"] for d in loaded.devices}
    assert ports == {"a1": 1161, "a2": 2161, "a3": 3161}


# ---------------------------------------------------------------- docs/config.md


def test_docs_name_every_key_of_the_config_models() -> None:
    c = config_module
    docs = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    models = (c.Config, c.ServerConfig, c.DefaultsConfig, c.CommuneConfig, c.SiteConfig,
              c.Coordinates, c.CameraConfig, c.ApConfig, c.OnvifAuth, c.SnmpAuth,
              c.CameraProfile, c.ApProfile, CheckSettings)
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields
               if f"`{name}`" not in docs and not (name.endswith(("_file", "_env"))
                                                   and f"`{name.rsplit('_', 1)[0]}`" in docs)]
    assert not missing, f"docs/config.md does not mention {missing}"
    for label in c.RESERVED_LABELS:
        assert f"`{label}`" in docs


def test_docs_yaml_examples_are_valid() -> None:
    docs = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        Config.model_validate(yaml.safe_load(block))


def test_a_device_label_may_not_override_a_metric_label(tmp_path: Path) -> None:
    # camnet_camera_stream_info{codec, profile}: a device's `profile` label would replace the
    # stream's profile (or the other way round) on that series.
    with pytest.raises(ConfigError) as err:
        parse_config(textwrap.dedent("""\
            sites: [{id: s, commune: c, name: S}]
            cameras: [{id: c1, site: s, address: 127.0.0.1, labels: {profile: indoor}}]
            """), tmp_path / "c.yaml")
    assert "cameras[0].labels.profile: is a label camnet sets itself" in str(err.value)
    from probes import METRICS
    assert {label for m in METRICS.values() for label in m.labels} <= config_module.RESERVED_LABELS
