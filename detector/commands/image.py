"""`detector image`: annotated images and one JSON each, for image files, folders and globs."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from detector.commands.options import add_command, add_model_options, make_detector


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "image",
        help="detect objects in images; writes annotated images and one JSON each",
        description="Detect objects in images: files, folders and globs. Writes DIR/<name>.jpg (annotated) and "
        'DIR/<name>.json ({"image": path, "detections": [...]}) for each image.',
        example=[
            (
                "two files, a folder and a glob, into runs/image",
                "detector image bus.jpg street.jpg photos/ 'shots/*.png'",
            ),
            (
                "only people and cars, surer boxes",
                "detector image photos/ --classes person car --conf 0.4 --out runs/people",
            ),
        ],
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs ('photos/*.jpg')")
    p.add_argument("--out", default="runs/image", metavar="DIR", help="output folder (default runs/image)")
    add_model_options(p)
    p.set_defaults(run=cmd_image)


def cmd_image(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from detector.render import draw_detections
    from detector.sinks import write_image, write_json_atomic
    from detector.sources import find_images, read_image

    paths = find_images(args.paths)
    detector = make_detector(args)
    out = Path(args.out)
    totals: Counter = Counter()
    for path in tqdm(paths, unit="image", disable=len(paths) < 2 or None):
        frame = read_image(path)
        dets = detector([frame])[0]
        totals.update(dets.class_name)
        write_image(out / f"{path.stem}.jpg", draw_detections(frame, dets))
        write_json_atomic(out / f"{path.stem}.json", {"image": str(path), **dets.to_dict()})
    print(f"images: {len(paths)} -> {out}/")
    print("detections: " + (", ".join(f"{k} {n}" for k, n in totals.most_common()) or "none"))
    return 0
