"""The lab orchestrator: every camera and access point of a camnet config, plus a control API.

`LabSite` reads a loaded config and serves each device at the address the config gives it;
a small HTTP server (default 127.0.0.1:9839) switches faults while it runs:

- `GET /status` → `{"ready": true, "devices": {id: state}, "cameras": {id: {...}}, "aps": [...]}`
- `POST /fault` with `{"device": ID|SITE|"all", "state": STATE}` → `{"changed": {id: state}}`;
  404 for an unknown device, 400 for a state the device does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.cameras import CameraLab, CameraSpec, FaultError, camera_look, parse_camera_fault
from monitor.config import ApConfig, CameraConfig, LoadedConfig, SnmpAuth

log = logging.getLogger("camnet.lab")

DEFAULT_CONTROL = "127.0.0.1:9839"
DEFAULT_RTSP_PORT = 8554


class UnknownDevice(KeyError):
    """No device, site or `all` by that name in the lab."""


@dataclass
class SnmpCredentials:
    """What the SNMP agents accept: one community and one v3 user for all."""

    community: str
    v3_user: str
    v3_auth_key: str
    v3_priv_key: str


def camera_specs(loaded: LoadedConfig, rtsp_port: int = DEFAULT_RTSP_PORT) -> list[CameraSpec]:
    """The lab cameras of a config, in config order (the position picks vendor and size)."""
    specs = []
    for index, cam in enumerate(loaded.config.cameras):
        target = loaded.target(cam)
        vendor, width, height, scene, rtsp_auth = camera_look(index)
        username, password = "admin", ""
        if target.auth is not None:
            username = getattr(target.auth.config, "username", None) or "admin"
            password = target.auth.secret("password") or ""
        specs.append(CameraSpec(
            id=cam.id, index=index, address=cam.address, onvif_port=target.options["onvif_port"],
            rtsp_port=rtsp_port, vendor=vendor, width=width, height=height, scene=scene,
            rtsp_auth=rtsp_auth, username=username, password=password,
        ))
    return specs


def snmp_credentials(loaded: LoadedConfig) -> SnmpCredentials:
    """The community and v3 user of the config's SNMP auths (first of each kind)."""
    # Placeholders when the config has no v3 auth: snmpsim always serves one v3 user.
    community, user, auth_key, priv_key = "public", "camnet", "camnet-lab-auth", "camnet-lab-priv"
    for ap in loaded.config.aps:
        target = loaded.target(ap)
        if target.auth is None or not isinstance(target.auth.config, SnmpAuth):
            continue
        if target.auth.config.version == "3":
            user = target.auth.config.username or user
            auth_key = target.auth.secret("auth_password") or auth_key
            priv_key = target.auth.secret("priv_password") or priv_key
        else:
            community = target.auth.secret("community") or community
    return SnmpCredentials(community, user, auth_key, priv_key)


class LabSite:
    """The whole simulated site: cameras, SNMP agents (when lab.snmp exists) and control API."""

    def __init__(self, loaded: LoadedConfig, state_dir: Path, *,
                 rtsp_port: int = DEFAULT_RTSP_PORT, control: str | None = DEFAULT_CONTROL,
                 cache_dir: Path | None = None) -> None:
        self.loaded = loaded
        self.state_dir = state_dir
        self.control = control
        self.cameras = CameraLab(camera_specs(loaded, rtsp_port), cache_dir)
        self.snmp: Any = None
        self._normalize_ap_state: Any = None
        self.snmp_error = ""
        self._runner: web.AppRunner | None = None
        self.startup_seconds = 0.0

    @property
    def aps(self) -> list[ApConfig]:
        """The access points of the config."""
        return list(self.loaded.config.aps)

    def _make_snmp(self) -> Any:
        if not self.aps:
            return None
        try:
            snmp = importlib.import_module("lab.snmp")
        except ImportError as e:
            self.snmp_error = f"lab.snmp not available ({e})"
            log.warning("access points not simulated: %s", self.snmp_error)
            return None
        creds = snmp_credentials(self.loaded)
        aps = [snmp.LabAp(ap.id, ap.address, self.loaded.target(ap).options["snmp_port"])
               for ap in self.aps]
        self._normalize_ap_state = snmp.normalize_state
        return snmp.SnmpLab(aps, self.state_dir, community=creds.community,
                            v3_user=creds.v3_user, v3_auth_key=creds.v3_auth_key,
                            v3_priv_key=creds.v3_priv_key)

    async def start(self) -> None:
        """Start everything; on failure stop what already started and re-raise."""
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.snmp = self._make_snmp()
            await asyncio.gather(self.cameras.start(),
                                 self.snmp.start() if self.snmp is not None else asyncio.sleep(0))
            if self.control:
                await self._start_control()
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    async def stop(self) -> None:
        """Stop every server and child process."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(Exception):
            await self.cameras.stop()
        if self.snmp is not None:
            with contextlib.suppress(Exception):
                await self.snmp.stop()

    # ------------------------------------------------------------ faults

    def resolve(self, name: str) -> list[str]:
        """Device ids named by a device id, a site id or `all` (UnknownDevice otherwise)."""
        devices = [d.id for d in self.loaded.devices]
        if name == "all":
            return devices
        if name in devices:
            return [name]
        by_site = [d.id for d in self.loaded.devices if d.site == name]
        if by_site:
            return by_site
        raise UnknownDevice(name)

    async def fault(self, name: str, state: str) -> dict[str, str]:
        """Set a state on a device, a site's devices or all; returns {device: new state}.

        The state is validated before anything changes, so a bad state changes nothing. On a
        site or `all`, a state that only one kind has (`black`, `loss=0.3`) goes to the
        devices of that kind; on a single device it must be one of that device's states.
        """
        ids = self.resolve(name)
        kinds = {d.id: d for d in self.loaded.devices}
        cams = [i for i in ids if isinstance(kinds[i], CameraConfig)]
        aps = [i for i in ids if isinstance(kinds[i], ApConfig)]
        errors: list[str] = []
        if cams:
            try:
                parse_camera_fault(state)
            except FaultError as e:
                errors.append(str(e))
                cams = []
        if aps:
            try:
                if self.snmp is None:
                    raise ValueError(
                        f"access points are not simulated: {self.snmp_error or 'none'}")
                self._normalize_ap_state(state)
            except ValueError as e:
                errors.append(str(e))
                aps = []
        if not cams and not aps:
            raise FaultError("; ".join(errors))
        changed: dict[str, str] = {}
        for cid in cams:
            changed[cid] = await self.cameras.set_fault(cid, state)
        for aid in aps:
            try:
                self.snmp.set_fault(aid, state)
            except ValueError as e:
                raise FaultError(str(e)) from e
            changed[aid] = self.snmp.status().get(aid, state)
        return changed

    def status(self) -> dict[str, str]:
        """The state of every device."""
        states = dict(self.cameras.status())
        if self.snmp is not None:
            states.update(self.snmp.status())
        return states

    def describe(self) -> dict[str, Any]:
        """What runs where (no secrets): for `GET /status` and the startup table."""
        cams = {}
        for spec in self.cameras.specs.values():
            cams[spec.id] = {
                "address": spec.address, "onvif": f"http://{spec.address}:{spec.onvif_port}"
                "/onvif/device_service", "rtsp": spec.rtsp_url(), "vendor": spec.vendor,
                "width": spec.width, "height": spec.height, "rtsp_auth": spec.rtsp_auth,
                "scene": spec.scene,
            }
        aps = {ap.id: {"address": ap.address,
                       "port": self.loaded.target(ap).options["snmp_port"],
                       "simulated": self.snmp is not None} for ap in self.aps}
        return {"ready": True, "pid": os.getpid(), "devices": self.status(), "cameras": cams,
                "aps": aps,
                "startup_seconds": round(self.startup_seconds, 2)}

    def table(self) -> str:
        """A short human table of what runs where."""
        lines = [f"{'DEVICE':<16} {'ADDRESS':<12} SERVES"]
        for spec in self.cameras.specs.values():
            auth = " digest auth" if spec.rtsp_auth else ""
            lines.append(
                f"{spec.id:<16} {spec.address:<12} ONVIF tcp/{spec.onvif_port} ({spec.vendor}), "
                f"RTSP tcp/{spec.rtsp_port} {spec.width}x{spec.height}{auth}")
        for ap in self.aps:
            port = self.loaded.target(ap).options["snmp_port"]
            what = "SNMP v2c+v3" if self.snmp is not None else f"NOT SERVED ({self.snmp_error})"
            lines.append(f"{ap.id:<16} {ap.address:<12} {what} udp/{port}")
        return "\n".join(lines)

    # ------------------------------------------------------------ control API

    async def _start_control(self) -> None:
        assert self.control is not None
        host, _, port = self.control.rpartition(":")
        app = web.Application()
        app.router.add_get("/status", self._http_status)
        app.router.add_post("/fault", self._http_fault)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host.strip("[]") or "127.0.0.1", int(port),
                          reuse_address=True).start()

    async def _http_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _http_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            device, state = str(body["device"]), str(body["state"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected JSON {"device": ..., "state": ...}'},
                                     status=400)
        try:
            changed = await self.fault(device, state)
        except UnknownDevice:
            return web.json_response(
                {"error": f"unknown device {device!r} (a device id, a site id or all)"},
                status=404)
        except (FaultError, ValueError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"changed": changed})
