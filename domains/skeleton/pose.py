"""Pose from video, offline: MediaPipe Pose (0.10.14 ships its model in the wheel) -> 33 landmarks ->
the project's layouts, with per-joint confidence.

Frames come from the shared video reader (:mod:`maskworks.core.io.video`: header checked before
decoding, decoding isolated), sampled at up to 30 frames per second. MediaPipe gives, per frame, image
landmarks (pixels) and world landmarks (metres, origin between the hips, y down); a frame without a
person gets score 0, and its world landmarks are interpolated from the nearest frames with one (held
at the ends). World landmarks are turned y-up (a 180-degree turn about x: ``(x, -y, -z)``) to match the
mocap and Kinect conventions of the rest of the domain.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskworks.core.io import InputError

from .layouts import COCO17, MEDIAPIPE33, convert
from .sequence import Skeleton, make_skeleton

TARGET_FPS = 30.0
UPPER = (11, 12, 13, 14, 15, 16)   # shoulders, elbows, wrists
LOWER = (23, 24, 25, 26, 27, 28)   # hips, knees, ankles
IN_VIEW = 0.5                      # mean visibility of both groups for a frame to show the whole body
MAX_FRAMES = 300        # frames read from one video by default (10 s at 30 fps)
CHUNK = 32              # frames decoded at a time (bounds memory for large videos)
OVERLAY_FRAMES = 6      # frames kept (downscaled) to draw the pose over


@dataclass
class PoseResult:
    """Landmarks of the one person MediaPipe follows, per sampled frame."""

    source: str
    fps: float                   # of the sampled frames
    frame_indices: np.ndarray    # [T] frame numbers in the file
    image_xy: np.ndarray         # [T, 33, 2] pixels
    world: np.ndarray            # [T, 33, 3] metres, y up, origin between the hips (interpolated where missing)
    visibility: np.ndarray       # [T, 33] MediaPipe's visibility, 0 where no person was found
    detected: np.ndarray         # [T] bool
    size: tuple[int, int]        # (width, height)
    seconds: float               # pose estimation time (decoding excluded)
    overlays: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame number, RGB image with the pose)

    @property
    def body_in_view(self) -> np.ndarray:
        """``[T]`` frames where MediaPipe sees the arms and the legs (mean visibility >= 0.5 each), not only
        a face or a torso with guessed legs."""
        v = self.visibility
        return self.detected & (v[:, list(UPPER)].mean(1) >= IN_VIEW) & (v[:, list(LOWER)].mean(1) >= IN_VIEW)

    @property
    def frames_per_second(self) -> float:
        return len(self.detected) / self.seconds if self.seconds > 0 else float("nan")

    def skeleton(self) -> Skeleton:
        """MediaPipe-33 3-D skeleton (metres, y up) with visibility as scores."""
        s = make_skeleton(self.world, self.source, scores=self.visibility, fps=self.fps)
        missing = int((~self.detected).sum())
        if missing:
            s.notes.append(f"no person found in {missing} of {len(self.detected)} frames: their joints are "
                           "interpolated from neighbouring frames (score 0)")
        return s

    def coco17(self) -> tuple[np.ndarray, np.ndarray]:
        """Image keypoints in COCO-17 order: (``[T, 17, 2]`` pixels, ``[T, 17]`` scores)."""
        c = convert(self.image_xy, MEDIAPIPE33, COCO17, self.visibility)
        return c.joints, c.scores

    def to_json(self) -> dict:
        return {"frames": int(len(self.detected)), "frames_with_person": int(self.detected.sum()),
                "frames_with_whole_body": int(self.body_in_view.sum()),
                "sampled_fps": round(self.fps, 3), "width": self.size[0], "height": self.size[1],
                "pose_seconds": round(self.seconds, 3), "pose_frames_per_second": round(self.frames_per_second, 2),
                "estimator": "MediaPipe Pose 0.10.14 (pose_landmark_full)"}

    def save(self, path: Path) -> Path:
        """``.npz``: mediapipe33 world (m, y up) and image (px) landmarks, visibility, COCO-17 keypoints."""
        coco, coco_score = self.coco17()
        np.savez_compressed(path, frame_indices=self.frame_indices, fps=np.float32(self.fps),
                            world_mediapipe33=self.world.astype(np.float32),
                            image_mediapipe33=self.image_xy.astype(np.float32), visibility=self.visibility,
                            detected=self.detected, keypoint_coco17=coco.astype(np.float32), keypoint_score_coco17=coco_score)
        return path


def _fill_missing(values: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Linear interpolation over time of frames without a detection (held at the ends)."""
    if detected.all():
        return values
    t = np.arange(len(detected))
    good = np.flatnonzero(detected)
    flat = values.reshape(len(detected), -1)
    out = np.stack([np.interp(t, good, flat[good, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape(values.shape).astype(np.float32)


def draw_pose(frame: np.ndarray, xy: np.ndarray | None, vis: np.ndarray | None, max_side: int = 360) -> np.ndarray:
    """The frame (downscaled to ``max_side``) with MediaPipe's bones drawn: green where visible (> 0.5),
    orange where guessed; the bare frame when no person was found (``xy`` None)."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    s = min(1.0, max_side / max(h, w))
    img = Image.fromarray(frame).resize((max(1, int(w * s)), max(1, int(h * s))))
    if xy is None:
        return np.asarray(img)
    d = ImageDraw.Draw(img)
    p = xy * s
    for a, b in MEDIAPIPE33.bones:
        ok = min(vis[a], vis[b]) > 0.5
        d.line([tuple(p[a]), tuple(p[b])], fill=(40, 220, 40) if ok else (230, 150, 30), width=2)
    for (x, y), v in zip(p, vis):
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255) if v > 0.5 else (230, 150, 30))
    return np.asarray(img)


class PoseEstimator:
    """MediaPipe Pose in video mode (landmarks tracked from frame to frame); one per video."""

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as e:  # the skeleton extra is not installed
            raise ImportError(f"pose from video needs mediapipe==0.10.14 (pip install 'maskworks[skeleton]'): {e}") from e
        self._pose = mp_pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                  min_detection_confidence=min_detection_confidence, min_tracking_confidence=0.5)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(image xy ``[33, 2]`` px, world ``[33, 3]`` m y-up, visibility ``[33]``) or None without a person."""
        r = self._pose.process(np.ascontiguousarray(rgb))
        if r.pose_landmarks is None or r.pose_world_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        img = np.array([(lm.x * w, lm.y * h) for lm in r.pose_landmarks.landmark], np.float32)
        world = np.array([(lm.x, -lm.y, -lm.z) for lm in r.pose_world_landmarks.landmark], np.float32)
        vis = np.array([lm.visibility for lm in r.pose_landmarks.landmark], np.float32)
        return img, world, np.clip(vis, 0.0, 1.0)

    def close(self) -> None:
        self._pose.close()


def extract_pose(path: str | Path, max_frames: int = MAX_FRAMES, target_fps: float = TARGET_FPS,
                 progress=None) -> PoseResult:
    """Video -> :class:`PoseResult` (``progress(done, total)`` is called as frames are processed)."""
    from maskworks.core.io.video import probe_video, read_frames

    path = Path(path)
    info = probe_video(path)
    step = max(1, int(round(info.fps / target_fps))) if info.fps and info.fps > 0 else 1
    indices = np.arange(0, info.num_frames, step)[:max_frames]
    if len(indices) == 0:
        raise InputError(path, "no frames", "give a video with at least one frame")
    fps = (info.fps / step) if info.fps else target_fps
    est = PoseEstimator()
    keep = set(np.linspace(0, len(indices) - 1, min(OVERLAY_FRAMES, len(indices))).round().astype(int).tolist())
    img_xy = np.zeros((len(indices), 33, 2), np.float32)
    world = np.zeros((len(indices), 33, 3), np.float32)
    vis = np.zeros((len(indices), 33), np.float32)
    detected = np.zeros(len(indices), bool)
    overlays: list[tuple[int, np.ndarray]] = []
    seconds = 0.0
    try:
        for lo in range(0, len(indices), CHUNK):
            clip = read_frames(path, indices[lo:lo + CHUNK], info=info)
            for k, frame in enumerate(clip.frames):
                i = lo + k
                t0 = time.perf_counter()
                out = est(frame)
                seconds += time.perf_counter() - t0
                if out is not None:
                    img_xy[i], world[i], vis[i] = out
                    detected[i] = True
                if i in keep:
                    overlays.append((int(indices[i]), draw_pose(frame, *((img_xy[i], vis[i]) if out is not None
                                                                          else (None, None)))))
                if progress is not None:
                    progress(i + 1, len(indices))
    finally:
        est.close()
    if not detected.any():
        raise InputError(path, f"no person found in any of {len(indices)} frames",
                         "give a video with one person fully in view")
    world = _fill_missing(world, detected)
    img_xy = _fill_missing(img_xy, detected)
    return PoseResult(str(path), float(fps), indices, img_xy, world, vis, detected, (info.width, info.height),
                      seconds, overlays)
