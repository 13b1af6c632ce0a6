"""A GStreamer RTSP server with the codecs and logins the lab cameras lack, for tests/test_rtsp_client.py.

Run by Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0):

    /usr/bin/python3 tests/gst_codec_server.py ADDRESS PORT USER PASSWORD

Mounts (live test patterns, 320x240, encoded as they are served; the test runs seconds):
  /h265    H.265 Main (x265), RTP per RFC 7798, parameter sets in the SDP and in-band
  /mjpeg   Motion JPEG (RTP per RFC 2435): a codec camnet's own RTSP client leaves to FFmpeg
  /basic   H.264 behind Basic authentication (USER, PASSWORD), as older cameras do, on PORT + 1
Prints `ready` once listening; ends on EOF on stdin or SIGTERM.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

SOURCE = ("videotestsrc is-live=true pattern=ball ! "
          "video/x-raw,format=I420,width=320,height=240,framerate=10/1")
LAUNCHES = {
    "/h265": (f"( {SOURCE} ! x265enc speed-preset=ultrafast tune=zerolatency key-int-max=10 ! "
              "h265parse ! rtph265pay name=pay0 pt=96 config-interval=-1 )"),
    "/mjpeg": f"( {SOURCE} ! jpegenc quality=60 ! rtpjpegpay name=pay0 pt=26 )",
    "/basic": (f"( {SOURCE} ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=10 ! "
               "h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"),
}


def main() -> int:
    address, port, user, password = sys.argv[1:5]
    Gst.init(None)
    loop = GLib.MainLoop()
    servers = []
    for offset, paths in ((0, ("/h265", "/mjpeg")), (1, ("/basic",))):
        server = GstRtspServer.RTSPServer()
        server.set_address(address)
        server.set_service(str(int(port) + offset))
        mounts = server.get_mount_points()
        for path in paths:
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(LAUNCHES[path])
            # Not shared: a shared media that is being torn down (its last client just
            # left) answers the next DESCRIBE 503, and camnet's MJPEG grab is two DESCRIBEs
            # in a row (its own client's, then FFmpeg's).
            factory.set_shared(False)
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
            if path == "/basic":
                factory.add_role_from_structure(Gst.Structure.new_from_string(
                    "user, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"))
            mounts.add_factory(path, factory)
        if offset:
            auth = GstRtspServer.RTSPAuth()
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            token = GstRtspServer.RTSPToken()
            token.set_string("media.factory.role", "user")
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
            server.set_auth(auth)
        if server.attach(None) == 0:
            sys.stderr.write(f"cannot listen on {address}:{int(port) + offset}\n")
            return 1
        servers.append(server)
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, lambda *_: loop.quit())
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
