"""detector: real-time object detection on OpenCV frames with Ultralytics YOLO models.

Public API::

    from detector import Detector
    dets = Detector("weights/yolo11n_int8_openvino_model")(frame)[0]
    people = dets[dets.class_id == 0]
"""

from detector import environment  # noqa: F401  (must run before ultralytics and cv2 load)
from detector.detections import Detections
from detector.errors import DetectorError
from detector.pipeline import DEFAULT_WEIGHTS, Detector

__all__ = ["DEFAULT_WEIGHTS", "Detections", "Detector", "DetectorError"]
__version__ = "0.1.0"
