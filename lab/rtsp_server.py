"""The lab cameras' RTSP servers: GStreamer's RTSP server looping pre-encoded H.264 clips.

Run by Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0), as a child of
`camnet lab`; it imports nothing from camnet. Protocol with the parent, one JSON object per line:

stdin, first line: {"cameras": [{"id", "address", "port", "paths": [...], "fps",
    "clips": {variant: path}, "width", "height", "username", "password",
    "sub": null | {"paths": [...], "query": null | "k=v", "clips": {variant: path},
    "width", "height"}}]}
    (username/password null = no RTSP auth; "sub" = a second, smaller stream of the same
    view, as a camera's sub-stream profile, served on its own paths and on the main paths
    when the request's query has "query", as Axis cameras do with `resolution=WxH`).
    Passwords travel only on this pipe.
stdin, then: {"seq": N, "cmd": "variant", "camera": ID, "variant": NAME}
             {"seq": N, "cmd": "auth", "camera": ID, "reject": true|false}
stdout: {"ready": true} once every server listens; {"ack": N} or {"ack": N, "error": "..."}.
EOF on stdin (the parent died or stopped) ends this process.

Each camera is its own GstRTSPServer on its own address and private port, so the URL paths
are exactly those the ONVIF replies announce. One shared media per camera: an appsrc fed one
access unit per need-data from the clip of the current variant; the sink's clock paces it, so
an idle camera (no client) costs nothing. Switching the variant restarts at the new clip's
first keyframe, so live sessions switch too.
"""

import json
import os
import secrets
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

AUD = b"\x00\x00\x00\x01\x09"
ROLE = "camera-user"


def split_access_units(data):
    """Split an Annex-B stream written with access-unit delimiters into (bytes, is_key)."""
    starts = []
    i = data.find(AUD)
    while i >= 0:
        starts.append(i)
        i = data.find(AUD, i + len(AUD))
    units = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(data)
        au = data[start:end]
        units.append((au, _has_idr(au)))
    if not units or not units[0][1]:
        raise ValueError("clip must start with a keyframe and use access-unit delimiters")
    return units


def _has_idr(au):
    i = au.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(au):
        if au[i + 3] & 0x1F == 5:
            return True
        i = au.find(b"\x00\x00\x01", i + 3)
    return False


class Factory(GstRtspServer.RTSPMediaFactory):
    """One mount's media: the default stream, or the sub-stream when the URL's query asks."""

    def __init__(self, launches, default, query):
        super().__init__()
        self.launches = launches
        self.default = default
        self.query = query

    def do_create_element(self, url):
        # Shared media are keyed by path and query, so each query gets its own media.
        asked = (url.query or "").split("&")
        stream = "sub" if self.query and self.query in asked else self.default
        return Gst.parse_launch(self.launches[stream])


class Camera:
    def __init__(self, spec):
        self.id = spec["id"]
        self.fps = int(spec.get("fps", 10))
        self.duration = Gst.SECOND // self.fps
        # Per stream ("main", and "sub" when the camera has one): variant -> access units.
        self.units = {"main": self._load(spec["clips"])}
        self.variant = "ok"
        self.username = spec.get("username")
        self.password = spec.get("password")
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(spec["address"])
        self.server.set_service(str(spec["port"]))
        launches = {"main": self._launch("main", spec["width"], spec["height"])}
        sub = spec.get("sub")
        if sub:
            self.units["sub"] = self._load(sub["clips"])
            launches["sub"] = self._launch("sub", sub["width"], sub["height"])
        mounts = self.server.get_mount_points()
        for path in spec["paths"]:
            mounts.add_factory(path, self._factory(launches, "main", (sub or {}).get("query")))
        for path in (sub or {}).get("paths", []):
            mounts.add_factory(path, self._factory({"sub": launches["sub"]}, "sub", None))
        self.set_auth(reject=False)
        if self.server.attach(None) == 0:
            raise OSError(f"cannot listen on {spec['address']}:{spec['port']}")

    @staticmethod
    def _load(clips):
        units = {}
        for variant, path in clips.items():
            with open(path, "rb") as f:
                units[variant] = split_access_units(f.read())
        return units

    def _launch(self, stream, width, height):
        caps = (f"video/x-h264,stream-format=byte-stream,alignment=au,"
                f"width={width},height={height},framerate={self.fps}/1")
        return (f'( appsrc name=src-{stream} is-live=false format=time max-bytes=0 block=false '
                f'caps="{caps}" ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )')

    def _factory(self, launches, default, query):
        factory = Factory(launches, default, query)
        factory.set_shared(True)
        factory.set_eos_shutdown(False)
        # TCP only: every packet then passes the lab's front door (offline/hang/stall faults),
        # and clients asking for UDP fall back to interleaved TCP as with many NVR setups.
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        factory.add_role_from_structure(Gst.Structure.new_from_string(
            f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        ))
        factory.connect("media-configure", self._on_media_configure)
        return factory

    def set_auth(self, reject):
        """Digest auth with the camera's credentials, or with a random password (`auth` fault)."""
        if self.username is None and not reject:
            self.server.set_auth(None)
            return
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        user = self.username or "admin"
        password = secrets.token_hex(16) if reject else self.password
        auth.add_digest(user, password, token)
        self.server.set_auth(auth)

    def _on_media_configure(self, factory, media):
        element = media.get_element()
        stream = next(s for s in ("main", "sub") if element.get_child_by_name(f"src-{s}"))
        appsrc = element.get_child_by_name(f"src-{stream}")
        state = {"variant": None, "index": 0, "n": 0, "stream": stream}
        # Queue at most two access units, so a fault switch shows within 0.2 s.
        if appsrc.find_property("max-buffers") is not None:  # GStreamer >= 1.20
            appsrc.set_property("max-buffers", 2)
        else:
            appsrc.set_property("max-bytes", 1)
        appsrc.connect("need-data", self._on_need_data, state)

    def _keyframe_now(self, units):
        pos = int(time.monotonic() * self.fps) % len(units)
        keys = [i for i, (_au, key) in enumerate(units) if key]
        return next((i for i in keys if i >= pos), keys[0])

    def _on_need_data(self, appsrc, _length, state):
        if state["variant"] != self.variant:
            # Switch at a keyframe of the new clip: the decoder never sees a gap. Which keyframe
            # follows the wall clock, so a new session (the media restarts when the last client
            # left) sees the loop where a live camera would be, not always its first frame.
            state["variant"] = self.variant
            state["index"] = self._keyframe_now(self.units[state["stream"]][self.variant])
        units = self.units[state["stream"]][state["variant"]]
        data, _key = units[state["index"]]
        state["index"] = (state["index"] + 1) % len(units)
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = buf.dts = state["n"] * self.duration
        buf.duration = self.duration
        state["n"] += 1
        appsrc.emit("push-buffer", buf)


class Controller:
    def __init__(self, loop):
        self.loop = loop
        self.cameras = {}
        self.buffer = b""

    def start(self, config):
        for spec in config["cameras"]:
            self.cameras[spec["id"]] = Camera(spec)
        self.reply({"ready": True})

    def reply(self, obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def on_stdin(self, fd, condition):
        chunk = os.read(fd, 65536)
        if not chunk:
            self.loop.quit()
            return False
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.handle(json.loads(line))
        return True

    def handle(self, msg):
        seq = msg.get("seq")
        try:
            camera = self.cameras[msg["camera"]]
            if msg["cmd"] == "variant":
                if msg["variant"] not in camera.units["main"]:
                    raise KeyError(f"no clip for variant {msg['variant']}")
                camera.variant = msg["variant"]
            elif msg["cmd"] == "auth":
                camera.set_auth(reject=bool(msg["reject"]))
            else:
                raise KeyError(f"unknown command {msg['cmd']}")
        except (KeyError, ValueError) as e:
            self.reply({"ack": seq, "error": str(e)})
            return
        self.reply({"ack": seq})


def main():
    Gst.init(None)
    loop = GLib.MainLoop()
    controller = Controller(loop)
    first = sys.stdin.buffer.readline()
    if not first:
        return 1
    try:
        controller.start(json.loads(first))
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write(f"rtsp_server: {e}\n")
        return 1
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, controller.on_stdin)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
