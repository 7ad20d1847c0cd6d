"""A real RTSP server (GStreamer's gst-rtsp-server) serving an MJPG video file, for the video tests.

Run with the *system* Python, which has GStreamer's introspection bindings (Debian packages
``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-base``,
``gstreamer1.0-plugins-good``; ``scripts/setup.sh`` installs them). The project's virtualenv
has no ``gi``: the tests start this file as a subprocess (``RtspServer`` in ``conftest.py``)::

    /usr/bin/python3 tests/video/rtsp_server.py --video moving-boxes.avi --path /cam [--port N] [--loop]

The file's JPEG frames are read once (``filesrc ! avidemux ! appsink``) and each client gets
its own stream from the first frame, paced at the file's frame rate (``appsrc`` with
timestamps, ``rtpjpegpay``: JPEG over RTP as IP cameras send MJPEG). Without ``--loop`` the
stream ends after the last frame; with it, the frames repeat until the server stops.

Prints ``READY rtsp://127.0.0.1:<port><path>`` on stdout once clients can connect
(``--port 0``, the default, picks a free port); stops on SIGTERM or SIGINT. ``--check`` prints
the missing Debian packages, if any (exit 1), and serves nothing.
"""

from __future__ import annotations

import argparse
import signal
import sys

# Debian package of each GStreamer element used here, for a clear message when one is missing.
ELEMENT_PACKAGES = {
    "filesrc": "libgstreamer1.0-0",
    "appsrc": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "avidemux": "gstreamer1.0-plugins-good",
    "jpegdec": "gstreamer1.0-plugins-good",
    "jpegenc": "gstreamer1.0-plugins-good",
    "rtpjpegpay": "gstreamer1.0-plugins-good",
    "rtpbin": "gstreamer1.0-plugins-good",
    "udpsrc": "gstreamer1.0-plugins-good",
    "multiudpsink": "gstreamer1.0-plugins-good",
}

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except ImportError as exc:  # no python3-gi
    MISSING_BINDINGS = "python3-gi ({})".format(exc)
except ValueError as exc:  # "Namespace GstRtspServer not available"
    MISSING_BINDINGS = "gir1.2-gst-rtsp-server-1.0 ({})".format(exc)
else:
    MISSING_BINDINGS = ""


def missing_packages() -> list[str]:
    """Debian packages this server needs that are not installed (each with what showed it)."""
    if MISSING_BINDINGS:
        return [MISSING_BINDINGS]
    Gst.init(None)
    missing = {}
    for element, package in ELEMENT_PACKAGES.items():
        if Gst.ElementFactory.find(element) is None:
            missing.setdefault(package, []).append(element)
    return [f"{package} (no GStreamer element {', '.join(elements)})" for package, elements in missing.items()]


def read_frames(video: str) -> tuple[list[bytes], Gst.Caps]:
    """Every JPEG frame of an MJPG .avi, and their caps (width, height, framerate)."""
    # Re-encoded with GStreamer's jpegenc: rtpjpegpay (RFC 2435) carries only the baseline JPEG subset, and
    # OpenCV's own MJPG writer produces frames it mangles (the receiver decodes garbage).
    pipeline = Gst.parse_launch(
        "filesrc name=file ! avidemux ! jpegdec ! videoconvert ! jpegenc quality=95 ! appsink name=sink sync=false"
    )
    pipeline.get_by_name("file").set_property("location", video)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames, caps = [], None
    try:
        while True:
            sample = sink.emit("pull-sample")  # None at the end of the file (or on an error)
            if sample is None:
                break
            buffer = sample.get_buffer()
            frames.append(buffer.extract_dup(0, buffer.get_size()))
            caps = sample.get_caps()
        message = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        if message is not None:
            error, debug = message.parse_error()
            raise SystemExit(f"rtsp_server: cannot read {video}: {error.message} ({debug})")
    finally:
        pipeline.set_state(Gst.State.NULL)
    if not frames or caps is None or caps.get_structure(0).get_name() != "image/jpeg":
        raise SystemExit(f"rtsp_server: {video} holds no JPEG (MJPG) video frames")
    return frames, caps


def file_stream_factory(frames: list[bytes], caps: Gst.Caps, loop: bool) -> GstRtspServer.RTSPMediaFactory:
    """One stream per client (not shared), from frame 0, paced by the timestamps at the file's rate."""
    _, num, den = caps.get_structure(0).get_fraction("framerate")
    frame_duration = Gst.util_uint64_scale_int(Gst.SECOND, den or 1, num or 20)

    def need_data(source, _length, state) -> None:
        index = state["next"]
        if index >= len(frames) and not loop:
            source.emit("end-of-stream")
            return
        data = frames[index % len(frames)]
        buffer = Gst.Buffer.new_allocate(None, len(data), None)
        buffer.fill(0, data)
        buffer.pts = buffer.dts = index * frame_duration
        buffer.duration = frame_duration
        state["next"] = index + 1
        source.emit("push-buffer", buffer)

    def configure(_factory, media) -> None:
        source = media.get_element().get_child_by_name("frames")
        source.set_property("caps", caps)
        source.connect("need-data", need_data, {"next": 0})

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(False)
    # pt=26: the static RTP payload type of JPEG (RFC 3551).
    factory.set_launch("( appsrc name=frames format=time ! rtpjpegpay name=pay0 pt=26 )")
    factory.connect("media-configure", configure)
    return factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list missing Debian packages (exit 1 if any)")
    parser.add_argument("--video", help="MJPG .avi file to serve")
    parser.add_argument("--path", default="/stream", help="mount path, e.g. /cam (default /stream)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--loop", action="store_true", help="repeat the video until stopped")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if args.check or missing:
        for package in missing:
            print(f"missing Debian package: {package}")
        return 1 if missing else 0
    if not args.video:
        parser.error("--video is required")
    if not args.path.startswith("/"):
        parser.error(f"--path must start with /, got {args.path!r}")

    Gst.init(None)
    frames, caps = read_frames(args.video)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, file_stream_factory(frames, caps, args.loop))
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    main_loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, main_loop.quit)
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}{args.path}", flush=True)
    main_loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
