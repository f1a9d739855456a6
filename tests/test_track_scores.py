"""Tracking scores (detector/evaluate/tracking.py, TrackEval's metrics) against a second computation written
here from the metrics' definitions, on TUD-Campus's real ground truth with tracks made from it: fresh
random noise, dropped boxes, swapped and broken identities and false boxes every run."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, needs_shared
from scipy.optimize import linear_sum_assignment

from detector import Detections, DetectorError
from detector.evaluate.tracking import KEYS, score_tracks
from detector.track.mot import MotWriter

TUD = SHARED / "tracking" / "TUD-Campus" / "gt" / "gt.txt"
TUD_WH = (640, 480)
IOU = 0.5


# --- a second computation, from the definitions ---------------------------------------------------------------


def load(path: Path, frame_wh: tuple[int, int]) -> dict[int, list[tuple[int, np.ndarray]]]:
    """frame -> [(id, clipped x1 y1 x2 y2)] of the rows to score (MOT15-style files: column 7 == 0 is left out)."""
    by_frame: dict[int, list] = defaultdict(list)
    w, h = frame_wh
    for line in path.read_text().splitlines():
        v = [float(x) for x in line.split(",")]
        if len(v) >= 7 and v[6] == 0:
            continue
        box = np.clip([v[2], v[3], v[2] + v[4], v[3] + v[5]], 0, [w, h, w, h])
        by_frame[int(v[0])].append((int(v[1]), box))
    return by_frame


def iou(a: np.ndarray, b: np.ndarray) -> float:
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_scores(tracks_txt: Path, gt_txt: Path, frame_wh: tuple[int, int]) -> dict[str, float]:
    """CLEAR MOT (Bernardin and Stiefelhagen 2008), IDF1/IDP/IDR (Ristani et al. 2016) and HOTA (Luiten et
    al. 2021), frame by frame in plain Python."""
    gt, tr = load(gt_txt, frame_wh), load(tracks_txt, frame_wh)
    frames = range(1, max([*gt, *tr]) + 1)
    sims = {}  # frame -> {(gt id, track id): IoU}
    for f in frames:
        sims[f] = {(g, t): iou(a, b) for g, a in gt.get(f, []) for t, b in tr.get(f, [])}
    num_gt = sum(len(gt.get(f, [])) for f in frames)
    num_tr = sum(len(tr.get(f, [])) for f in frames)
    gt_len, tr_len = Counter(), Counter()
    for f in frames:
        gt_len.update(g for g, _ in gt.get(f, []))
        tr_len.update(t for t, _ in tr.get(f, []))

    def assign(pairs: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
        """Maximum total weight one-to-one matching over pairs of positive weight."""
        if not pairs:
            return []
        rows, cols = sorted({g for g, _ in pairs}), sorted({t for _, t in pairs})
        weight = np.zeros((len(rows), len(cols)))
        for (g, t), s in pairs.items():
            weight[rows.index(g), cols.index(t)] = s
        r, c = linear_sum_assignment(weight, maximize=True)
        return [(rows[i], cols[j]) for i, j in zip(r, c) if weight[i, j] > 0]

    # CLEAR: keep last frame's correspondences that still hold, then match the rest for the highest total IoU
    fn = fp = switches = 0
    last_match: dict[int, int] = {}  # gt id -> the track it was last matched to, ever
    previous: dict[int, int] = {}  # gt id -> its track in the previous frame
    covered, segments = Counter(), Counter()
    for f in frames:
        valid = {p: s for p, s in sims[f].items() if s >= IOU}
        if not gt.get(f) or not tr.get(f):  # nothing to match: TrackEval leaves the correspondences as they were
            fn, fp = fn + len(gt.get(f, [])), fp + len(tr.get(f, []))
            continue
        kept = [(g, t) for g, t in previous.items() if (g, t) in valid]
        used_g, used_t = {g for g, _ in kept}, {t for _, t in kept}
        rest = {(g, t): s for (g, t), s in valid.items() if g not in used_g and t not in used_t}
        matches = kept + assign(rest)
        switches += sum(1 for g, t in matches if g in last_match and last_match[g] != t)
        segments.update(g for g, _ in matches if g not in previous)
        fn += len(gt[f]) - len(matches)
        fp += len(tr[f]) - len(matches)
        covered.update(g for g, _ in matches)
        last_match.update(matches)
        previous = dict(matches)
    ratio = {g: covered[g] / n for g, n in gt_len.items()}

    # Identity: the one-to-one pairing of whole trajectories that maximises the frames they match in
    together = Counter(p for f in frames for p, s in sims[f].items() if s >= IOU)
    idtp = sum(together[p] for p in assign(dict(together)))

    # HOTA: for each alpha, per-frame matching weighted by how well whole trajectories align, then DetA, AssA
    potential = Counter()
    for f in frames:
        row, col = Counter(), Counter()
        for (g, t), s in sims[f].items():
            row[g] += s
            col[t] += s
        for (g, t), s in sims[f].items():
            if row[g] + col[t] - s > np.finfo(float).eps:
                potential[g, t] += s / (row[g] + col[t] - s)
    align = {p: v / (gt_len[p[0]] + tr_len[p[1]] - v) for p, v in potential.items()}
    hotas = []
    for alpha in np.arange(0.05, 0.99, 0.05):
        tp = 0
        pairs = Counter()
        for f in frames:
            chosen = assign({p: align.get(p, 0) * s for p, s in sims[f].items()}) if gt.get(f) and tr.get(f) else []
            chosen = [p for p in chosen if sims[f][p] >= alpha - np.finfo(float).eps]
            tp += len(chosen)
            pairs.update(chosen)
        det_a = tp / max(1, num_gt + num_tr - tp)
        ass_a = sum(n * n / (gt_len[g] + tr_len[t] - n) for (g, t), n in pairs.items()) / max(1, tp)
        hotas.append(np.sqrt(det_a * ass_a))
    return {
        "MOTA": 1 - (fn + fp + switches) / num_gt,
        "IDF1": 2 * idtp / (num_gt + num_tr),
        "HOTA": float(np.mean(hotas)),
        "IDP": idtp / num_tr,
        "IDR": idtp / num_gt,
        "ID_switches": switches,
        "MT": sum(r > 0.8 for r in ratio.values()),
        "ML": sum(r < 0.2 for r in ratio.values()),
        "fragmentations": sum(n - 1 for n in segments.values() if n > 1),
    }


# --- tracks made from the ground truth ------------------------------------------------------------------------


def noisy_tracks(gt_txt: Path, out: Path, rng: np.random.Generator) -> None:
    """The ground truth with jittered boxes, 10% dropped (never a whole frame), two identity swaps, one broken
    identity and a few false boxes."""
    rows = np.loadtxt(gt_txt, delimiter=",", ndmin=2)[:, :6]
    rows[:, 2:4] += rng.normal(0, 0.06, (len(rows), 2)) * rows[:, 4:6]
    rows[:, 4:6] *= 1 + rng.normal(0, 0.06, (len(rows), 2))
    keep = rng.random(len(rows)) > 0.1
    for f in np.unique(rows[:, 0]):
        here = rows[:, 0] == f
        keep[np.flatnonzero(here)[0]] |= not keep[here].any()
    rows = rows[keep]

    def alive_across(frame: int) -> np.ndarray:
        """The ids seen both before ``frame`` and from it on."""
        return np.intersect1d(rows[rows[:, 0] < frame, 1], rows[rows[:, 0] >= frame, 1])

    for _ in range(2):  # from a random frame on, two people trade identities
        frame = rng.integers(10, 60)
        a, b = rng.choice(alive_across(frame), 2, replace=False)
        later = rows[:, 0] >= frame
        was_a, was_b = later & (rows[:, 1] == a), later & (rows[:, 1] == b)
        rows[was_a, 1], rows[was_b, 1] = b, a
    broken = rng.choice(alive_across(35))  # and one gets a new identity halfway
    rows[(rows[:, 1] == broken) & (rows[:, 0] >= 35), 1] = 100
    false = np.column_stack(
        (rng.integers(1, 72, 15), 200 + np.arange(15), rng.uniform(0, 500, (15, 2)), rng.uniform(30, 120, (15, 2)))
    )
    rows = np.concatenate((rows, false))
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    np.savetxt(out, np.column_stack((rows, np.ones(len(rows)), np.full((len(rows), 3), -1))), delimiter=",", fmt="%g")


def assert_scores_equal(ours: dict, reference: dict, context: str) -> None:
    assert list(ours) == list(KEYS)
    for key in KEYS:
        if isinstance(reference[key], int):
            assert isinstance(ours[key], int) and ours[key] == reference[key], f"{key}: {context}"
        else:
            assert ours[key] == pytest.approx(reference[key], abs=1e-3), f"{key}: {context}"


@needs_shared
@pytest.mark.parametrize("run", range(3))
def test_scores_equal_an_independent_computation_on_real_ground_truth(tmp_path, run):
    seed = int(np.random.SeedSequence().entropy % 2**32)
    tracks = tmp_path / "tracks.txt"
    noisy_tracks(TUD, tracks, np.random.default_rng(seed))
    ours, reference = score_tracks(tracks, TUD, TUD_WH), reference_scores(tracks, TUD, TUD_WH)
    context = f"seed {seed}: ours {ours}, reference {reference}"
    assert_scores_equal(ours, reference, context)
    for key in ("MOTA", "IDF1", "HOTA", "IDP", "IDR"):
        assert 0.2 < ours[key] < 0.99, f"{key} should be neither 0 nor 1 on these tracks: {context}"
    assert ours["ID_switches"] > 0 and ours["fragmentations"] >= 0, context


@needs_shared
def test_the_ground_truth_as_tracks_scores_one(tmp_path):
    """Written through MotWriter from Detections, as `detector video --track --mot` writes."""
    rows = np.loadtxt(TUD, delimiter=",", ndmin=2)
    tracks = tmp_path / "tracks.txt"
    with MotWriter(tracks) as writer:
        for f in range(1, 72):
            here = rows[rows[:, 0] == f]
            xyxy = torch.tensor(np.column_stack((here[:, 2:4], here[:, 2:4] + here[:, 4:6])), dtype=torch.float32)
            n = len(here)
            dets = Detections(
                xyxy, torch.ones(n), torch.zeros(n, dtype=torch.int64), {0: "person"}, torch.tensor(here[:, 1]).long()
            )
            writer.write(f - 1, dets)
    scores = score_tracks(tracks, TUD, TUD_WH)
    assert scores == {
        "MOTA": 1.0,
        "IDF1": 1.0,
        "HOTA": pytest.approx(1.0),
        "IDP": 1.0,
        "IDR": 1.0,
        "ID_switches": 0,
        "MT": 8,
        "ML": 0,
        "fragmentations": 0,
    }
    assert reference_scores(tracks, TUD, TUD_WH)["MOTA"] == 1.0


# --- small hand-made sequences ---------------------------------------------------------------------------------


def write(path: Path, rows: list[tuple]) -> Path:
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows))
    return path


def people(frames: int, ids: int, extra: tuple = ()) -> list[tuple]:
    """``ids`` people standing side by side for ``frames`` frames: frame,id,x,y,w,h (+ extra columns)."""
    return [(f, k, 10 + 60 * k, 100, 40, 100, *extra) for f in range(1, frames + 1) for k in range(1, ids + 1)]


def test_rows_flagged_zero_are_not_scored(tmp_path):
    scored = people(10, 3, (1,))
    flagged = [(f, 9, 400, 300, 40, 100, 0) for f in range(1, 11)]  # a fourth person, flagged 0
    gt = write(tmp_path / "gt.txt", scored + flagged)
    tracks = write(tmp_path / "tracks.txt", [row[:6] + (0.9, -1, -1, -1) for row in scored])
    scores = score_tracks(tracks, gt, TUD_WH)
    assert scores["MOTA"] == scores["IDF1"] == 1.0 and scores["ML"] == 0
    assert scores == reference_scores(tracks, gt, TUD_WH) | {"HOTA": pytest.approx(1.0)}
    # without the flag, the fourth person is missed: 10 misses in 40 boxes
    write(tmp_path / "gt.txt", scored + [row[:6] + (1,) for row in flagged])
    scores = score_tracks(tracks, gt, TUD_WH)
    assert scores["MOTA"] == pytest.approx(0.75) and scores["ML"] == 1


def test_mot17_rows_score_pedestrians_and_forgive_distractors(tmp_path):
    """9-column rows: class 1 scored, a track on a distractor (8) or a static person (7) removed, a track on
    a car (3) a false positive, as MOTChallenge scores MOT17."""
    pedestrians = people(10, 2, (1, 1, 1.0))
    x = {3: 300, 7: 400, 8: 500}  # a car (flagged 0, as MOT17 flags cars), a static person, a distractor
    others = [(f, 10 + c, x[c], 100, 40, 100, 0 if c == 3 else 1, c, 1.0) for f in range(1, 11) for c in x]
    gt = write(tmp_path / "gt.txt", pedestrians + others)
    on_people = [row[:6] + (0.9, -1, -1, -1) for row in pedestrians]
    on_distractors = [row[:6] + (0.9, -1, -1, -1) for row in others if row[7] != 3]
    tracks = write(tmp_path / "tracks.txt", on_people + on_distractors)
    assert score_tracks(tracks, gt, TUD_WH)["MOTA"] == 1.0
    on_car = [row[:6] + (0.9, -1, -1, -1) for row in others if row[7] == 3]
    write(tmp_path / "tracks.txt", on_people + on_car)
    assert score_tracks(tracks, gt, TUD_WH)["MOTA"] == pytest.approx(0.5)  # 10 false in 20 boxes


def test_boxes_past_the_frame_are_clipped(tmp_path):
    gt = write(tmp_path / "gt.txt", [(f, 1, 600, 100, 100, 100) for f in range(1, 6)])  # half out of 640
    tracks = write(tmp_path / "tracks.txt", [(f, 5, 600, 100, 40, 100, 0.9, -1, -1, -1) for f in range(1, 6)])
    assert score_tracks(tracks, gt, TUD_WH)["MOTA"] == 1.0  # IoU 1 once clipped; 0.4 unclipped
    assert score_tracks(tracks, gt, (1280, 720))["MOTA"] == -1.0  # on a wider frame, nothing is clipped


def test_no_tracks_scores_zero(tmp_path):
    gt = write(tmp_path / "gt.txt", people(5, 2))
    tracks = write(tmp_path / "tracks.txt", [])
    scores = score_tracks(tracks, gt, TUD_WH)
    assert scores["MOTA"] == scores["IDF1"] == scores["HOTA"] == 0.0 and scores["ML"] == 2


def test_bad_files_say_which_line(tmp_path):
    gt = write(tmp_path / "gt.txt", people(5, 2))
    tracks = tmp_path / "tracks.txt"
    tracks.write_text("1,1,10,100,40,100,0.9,-1,-1,-1\n1,2,oops\n")
    with pytest.raises(DetectorError, match="line 2"):
        score_tracks(tracks, gt, TUD_WH)
    write(tracks, [(1, 1, 10, 100, 40, 100), (1, 1, 70, 100, 40, 100)])
    with pytest.raises(DetectorError, match="id 1 appears twice in frame 1"):
        score_tracks(tracks, gt, TUD_WH)
    write(gt, [(1, 1, 10, 100, 40, 100, 0)])
    with pytest.raises(DetectorError, match="no boxes to score"):
        score_tracks(write(tracks, []), gt, TUD_WH)
