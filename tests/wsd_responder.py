"""A WS-Discovery responder that answers Probes like ONVIF cameras do, for `camnet discover` tests.

No WS-Discovery traffic was recorded with the ONVIF captures in /work/shared/onvif-captures, so
the ProbeMatches envelope follows the structure of WS-Discovery 2005/04 as ONVIF Core (section 7)
requires: RelatesTo = the Probe's MessageID, one ProbeMatch with EndpointReference, Types
`dn:NetworkVideoTransmitter tds:Device`, Scopes, XAddrs and MetadataVersion. The Scopes of each
camera are the ones the real cameras of those captures reported (GetScopes responses of the
Hikvision DS-2DF7276-AEL and the AXIS Q6045-E), copied below.

Use in-process (`Responder(...).start()` / `.stop()`) or as a script inside a network namespace:
`python3 tests/wsd_responder.py --join IFACE_ADDR --camera HOST:PORT,UUID,VENDOR ...`.
"""

from __future__ import annotations

import argparse
import re
import socket
import struct
import threading
import uuid
from dataclasses import dataclass

GROUP = "239.255.255.250"
PORT = 3702

SCOPES = {
    "hikvision": [
        "onvif://www.onvif.org/type/video_encoder",
        "onvif://www.onvif.org/Profile/Streaming",
        "onvif://www.onvif.org/Profile/G",
        "onvif://www.onvif.org/type/audio_encoder",
        "onvif://www.onvif.org/type/ptz",
        "onvif://www.onvif.org/hardware/DS-2DF7276-AEL",
        "onvif://www.onvif.org/name/DS-2DF7276-AEL",
        "onvif://www.onvif.org/location/city/hangzhou",
    ],
    "axis": [
        "onvif://www.onvif.org/type/video_encoder",
        "onvif://www.onvif.org/Profile/Streaming",
        "onvif://www.onvif.org/hardware/Q6045-E",
        "onvif://www.onvif.org/name/AXIS%20Q6045-E",
        "onvif://www.onvif.org/type/ptz",
        "onvif://www.onvif.org/location/",
    ],
}

_MESSAGE_ID = re.compile(rb"<(?:\w+:)?MessageID[^>]*>\s*([^<\s]+)\s*</")


@dataclass
class Camera:
    """One simulated camera: where its ONVIF service is and who it is."""

    host: str
    port: int
    endpoint: str  # urn:uuid:...
    vendor: str = "hikvision"


def probe_match(cam: Camera, relates_to: str, number: int) -> bytes:
    """The ProbeMatches datagram a camera sends back."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:wsadis="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl" '
        'xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
        "<env:Header>"
        f"<wsadis:MessageID>urn:uuid:{uuid.uuid4()}</wsadis:MessageID>"
        f"<wsadis:RelatesTo>{relates_to}</wsadis:RelatesTo>"
        "<wsadis:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsadis:To>"
        "<wsadis:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches"
        "</wsadis:Action>"
        f'<d:AppSequence InstanceId="1700000000" MessageNumber="{number}"/>'
        "</env:Header>"
        "<env:Body><d:ProbeMatches><d:ProbeMatch>"
        f"<wsadis:EndpointReference><wsadis:Address>{cam.endpoint}</wsadis:Address>"
        "</wsadis:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
        f"<d:Scopes>{' '.join(SCOPES[cam.vendor])}</d:Scopes>"
        f"<d:XAddrs>http://{cam.host}:{cam.port}/onvif/device_service</d:XAddrs>"
        "<d:MetadataVersion>10</d:MetadataVersion>"
        "</d:ProbeMatch></d:ProbeMatches></env:Body></env:Envelope>"
    ).encode()


class Responder:
    """Listens on (bind, port), optionally joined to the WS-Discovery group on one interface
    address, and answers every Probe for NetworkVideoTransmitter with one datagram per camera;
    with `noise`, first sends junk and a match for another probe (the client must ignore both)."""

    def __init__(self, cameras: list[Camera], bind: str = "0.0.0.0", port: int = PORT,
                 join: str | None = None, noise: bool = False) -> None:
        self.cameras = cameras
        self.noise = noise
        self.probes = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, port))
        if join is not None:
            mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(join))
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.serve, daemon=True)

    def start(self) -> Responder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def serve(self) -> None:
        number = 0
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            m = _MESSAGE_ID.search(data)
            if b"Probe" not in data or m is None or b"NetworkVideoTransmitter" not in data:
                continue
            self.probes += 1
            if self.noise:
                self.sock.sendto(b"<not xml", source)
                self.sock.sendto(probe_match(Camera("192.0.2.1", 80, "urn:uuid:other"),
                                             "uuid:another-probe", 0), source)
            for cam in self.cameras:
                number += 1
                self._reply(cam, probe_match(cam, m.group(1).decode(), number), source)

    def _reply(self, cam: Camera, data: bytes, dest: tuple[str, int]) -> None:
        # answer from the camera's own address when this host has it (as a real camera would)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((cam.host, 0))
                s.sendto(data, dest)
        except OSError:
            self.sock.sendto(data, dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--join", help="interface address to join the WS-Discovery group on")
    parser.add_argument("--camera", action="append", default=[],
                        help="HOST:PORT,urn:uuid:...,hikvision|axis")
    args = parser.parse_args()
    cams = []
    for spec in args.camera:
        where, endpoint, vendor = spec.split(",")
        host, port = where.rsplit(":", 1)
        cams.append(Camera(host, int(port), endpoint, vendor))
    responder = Responder(cams, args.bind, args.port, args.join)
    print("ready", flush=True)
    responder.serve()


if __name__ == "__main__":
    main()
