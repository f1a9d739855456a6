"""Tracking: persistent IDs on `Detections` with Ultralytics' ByteTrack and BoT-SORT, told the time between frames."""

from detector.track.tracker import TRACKER_CONF, Tracker

__all__ = ["TRACKER_CONF", "Tracker"]
