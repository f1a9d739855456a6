"""`detector live`, `detector demo` and `detector cameras`: the live window, on a camera, a stream, a file
replayed as a camera, or the bundled clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detector.commands.options import (
    KEYS_HELP,
    add_command,
    add_live_options,
    add_model_options,
    add_serve_options,
    add_tracking_options,
    make_detector,
    make_serve,
    make_tracking,
)
from detector.sources import CAPTURE_BACKENDS, SAMPLE_VIDEO


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "live",
        help="the live window: a camera, stream or file in, boxes and latency on screen",
        description="Live detection in a window: the newest frame is always shown, with the boxes of the latest "
        "result, the frame rates and the capture-to-screen latency. Keys: " + KEYS_HELP + ".",
        example=[
            ("camera 0", "detector live"),
            (
                "a camera's size, rate and format",
                "detector live --source /dev/video2 --width 1280 --height 720 --fps 30 --fourcc MJPG",
            ),
            (
                "a stream, recorded, with the detections",
                "detector live --source rtsp://192.168.1.20/stream --record out.mp4 --jsonl out.jsonl",
            ),
            ("a file replayed as a camera, over and over", "detector live --simulate-live clip.mp4 --loop"),
            (
                "IDs, trails, and people crossing a line across the middle, counted",
                "detector live --track --trails 30 --line 0,0.5,1,0.5 --classes person",
            ),
            (
                "no screen (over SSH): watch and steer it from a browser on this machine",
                "detector live --serve 8080 --no-show",
            ),
        ],
    )
    p.add_argument(
        "--source",
        default="0",
        metavar="SRC",
        help="camera index (0), device path (/dev/video0), stream URL (rtsp://, http://, rtmp://), video "
        "file (replayed at its own frame rate) or image folder (a slideshow at --fps, default 1); default 0",
    )
    p.add_argument(
        "--simulate-live",
        metavar="FILE",
        help="replay FILE on the wall clock at its frame rate, dropping frames like a camera",
    )
    p.add_argument(
        "--speed", type=float, default=1.0, metavar="F", help="replay a file F times faster than real time (stress)"
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="replay a file or image folder from the start when it ends, until --duration or q "
        "(frame numbers keep counting)",
    )
    g = p.add_argument_group("camera")
    g.add_argument("--width", type=int, help="ask the camera for this width")
    g.add_argument("--height", type=int, help="ask the camera for this height")
    g.add_argument("--fps", type=float, help="ask the camera for this frame rate")
    g.add_argument("--fourcc", help="ask the camera for this pixel format, e.g. MJPG")
    g.add_argument("--backend", default="any", choices=sorted(CAPTURE_BACKENDS), help="capture API (default any)")
    g.add_argument("--timeout", type=float, default=5.0, metavar="S", help="stream open/read time-out (default 5)")
    add_live_options(p)
    add_model_options(p)
    add_tracking_options(p)
    add_serve_options(p)
    p.set_defaults(run=cmd_live)

    p = add_command(
        subparsers,
        "demo",
        help="no camera needed: the bundled clip replayed as a live camera in the window",
        description="The bundled 12 s clip replayed as a live camera, looping until --duration, q or Ctrl-C, "
        "with or without a window (--no-show). Without a display it writes runs/demo/demo.mp4 and demo.jsonl "
        "instead, for one pass of the clip unless --duration says longer. "
        "Keys: " + KEYS_HELP + ".",
        example=[
            ("the window, until q", "detector demo"),
            (
                "one minute, no window, the detections written",
                "detector demo --no-show --duration 60 --jsonl demo.jsonl",
            ),
            (
                "in a browser, from other machines too (a token is made and printed)",
                "detector demo --serve 0.0.0.0:8080",
            ),
        ],
    )
    add_live_options(p)
    add_model_options(p)
    add_tracking_options(p)
    add_serve_options(p)
    p.set_defaults(run=cmd_demo)

    p = add_command(
        subparsers,
        "cameras",
        help="list the cameras that open",
        description="List the cameras that open, with what they give.",
        example=[("then open the second one", "detector cameras && detector live --source 1")],
    )
    p.set_defaults(run=cmd_cameras)


def cmd_live(args: argparse.Namespace) -> int:
    return run_live(args, args.simulate_live or args.source, loop=args.loop)


def cmd_demo(args: argparse.Namespace) -> int:
    from detector.live import LiveOutputs

    headless = LiveOutputs(record=Path("runs/demo/demo.mp4"), jsonl=Path("runs/demo/demo.jsonl"))
    return run_live(args, str(SAMPLE_VIDEO), loop=True, fallback=headless)


def cmd_cameras(args: argparse.Namespace) -> int:
    from detector.sources import list_cameras

    found = list_cameras()
    for index, description in found:
        print(f"{index}: {description}")
    if not found:
        print("no camera opens here (none connected, or no permission: on Linux, join the 'video' group)")
    return 0


def run_live(args: argparse.Namespace, spec: str, loop: bool, fallback=None) -> int:
    """The live loop on ``spec``; ``fallback``: the outputs to write instead when there is no display."""
    from detector.live import LiveOutputs, LiveRun, check_can_show
    from detector.sources import CameraSettings, LiveSource

    outputs = LiveOutputs(
        jsonl=Path(args.jsonl) if args.jsonl else None,
        record=Path(args.record) if args.record else None,
        record_raw=Path(args.record_raw) if args.record_raw else None,
        snapshots=Path(args.snapshots),
    )
    serve = make_serve(args)
    show, outputs = check_can_show(not args.no_show, outputs, None if serve else fallback, serving=serve is not None)
    settings = CameraSettings(
        getattr(args, "width", None),
        getattr(args, "height", None),
        getattr(args, "fps", None),
        getattr(args, "fourcc", None),
        getattr(args, "backend", "any"),
    )
    detector = make_detector(args)
    source = LiveSource(
        spec, settings, timeout_s=getattr(args, "timeout", 5.0), loop=loop, speed=getattr(args, "speed", 1.0)
    )
    _report_granted(source, settings)
    duration = args.duration
    if duration is None and not show and fallback is not None and outputs is fallback:
        # `detector demo` on a machine without a display, nothing asked for: one pass of the clip, so that
        # the README's first command ends by itself (--duration runs it longer)
        duration = source.frames / source.fps if source.frames else None
    try:
        h, w = source.frame_hw or (0, 0)
        tracking = make_tracking(args, source.fps, (w, h))
    except BaseException:
        source.stop()  # bad --line or --zone: the camera is released before the one-line error
        raise
    run = LiveRun(
        detector, source, outputs, show=show, hud=not args.no_hud, duration_s=duration, tracking=tracking, serve=serve
    )
    return run.run()


def _report_granted(source, settings) -> None:
    if source.kind != "camera":
        return
    print(f"camera {source.spec}: {source.stats.granted}")
    w, h = (int(v) for v in source.stats.granted.split(" ")[0].split("x"))
    if (settings.width and settings.width != w) or (settings.height and settings.height != h):
        print(f"note: asked for {settings.width or w}x{settings.height or h}; the camera gave {w}x{h}", file=sys.stderr)
