"""How weights/yolo11n_int8_openvino_model/ (the default model) is made from weights/yolo11n.pt.

    python tools/make_default_model.py [--data ../shared/data/coco128/data.yaml]

Ultralytics' exporter turns the checkpoint into an OpenVINO IR with a dynamic input (height and width open)
and NNCF quantises it to INT8, calibrated on coco128's 128 images letterboxed to 640x640 (the path
`detector export --int8 --dynamic` takes). The app compiles the IR for each source's own letterboxed shape.
The new IR replaces the bundled one only once it is complete. NNCF's statistics are deterministic on one
machine; another CPU can round a few weights differently (tests/test_default_model.py checks the result
against the checkpoint, not byte by byte).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "weights" / "yolo11n_int8_openvino_model"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco128" / "data.yaml")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"error: calibration data '{args.data}' not found: pass --data coco128/data.yaml", file=sys.stderr)
        return 2
    from detector.evaluate.dataset import writable_view
    from detector.export import export_model

    with tempfile.TemporaryDirectory(dir=OUT.parent) as tmp:
        tmp = Path(tmp)
        weights = tmp / "yolo11n.pt"
        shutil.copy(REPO / "weights" / "yolo11n.pt", weights)
        data = writable_view(args.data, tmp / "data")
        made = Path(export_model(str(weights), "openvino", 640, int8=True, dynamic=True, data=str(data)))
        meta = made / "metadata.yaml"  # names the calibration data as given, not this run's temporary folder
        meta.write_text(meta.read_text().replace(str(data), os.path.relpath(args.data.resolve(), REPO)))
        old = tmp / "old"
        if OUT.exists():
            OUT.rename(old)
        made.rename(OUT)
    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(REPO)}  {f.stat().st_size:,} bytes  sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
