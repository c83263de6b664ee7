"""Face crops at 160 px with MediaPipe's face detector (mediapipe 0.10.14 ships the BlazeFace models in
its wheel, so this runs offline; the 1.x releases download models and are not used).

One fixed square per clip, as the shipped RAVDESS crops were made: the detector runs on the sampled
frames, the median face centre and height give a square of side ``1.69 x`` the face height with the
face centre at (0.52, 0.54) of the crop (the 1.69 factor makes faces as large as in the shipped
crops, where the face fills 0.59 of the side), and every frame is cut with that square, padded with
black where it leaves the picture. A clip where too few frames hold a face has *no face*: the
emotion job then classifies it from its sound and says so.

mediapipe 0.10.14 was built against protobuf 4 and calls ``SymbolDatabase.GetPrototype``, which
protobuf 5 removed (tensorboard needs protobuf >= 5); :func:`_import_mediapipe` adds that one
method back, as ``message_factory.GetMessageClass``, when it is missing.
"""
from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import asdict, dataclass

import numpy as np

from maskworks.domains.audiovisual.features import IMAGE_SIZE

SIDE_OVER_FACE = 1.69
FACE_CENTRE = (0.52, 0.54)  # where the face centre sits in the crop (x, y), as in the shipped crops
_LOCK = threading.Lock()


def _import_mediapipe():
    try:
        from google.protobuf import message_factory, symbol_database
    except ImportError as e:  # pragma: no cover - protobuf comes with mediapipe
        raise ImportError("face detection needs mediapipe: pip install 'maskworks[audiovisual]'") from e
    if not hasattr(symbol_database.SymbolDatabase, "GetPrototype"):
        symbol_database.SymbolDatabase.GetPrototype = lambda self, descriptor: message_factory.GetMessageClass(descriptor)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its extension prints a protobuf probe's error on import
            import mediapipe as mp
    except ImportError as e:
        raise ImportError("face detection needs mediapipe 0.10.14: pip install 'maskworks[audiovisual]'") from e
    return mp


@dataclass(frozen=True)
class FaceBox:
    """The crop square in pixels of the original frames, and how many sampled frames held a face."""

    x0: float
    y0: float
    side: float
    found: int
    searched: int
    score: float

    @property
    def fraction(self) -> float:
        return self.found / max(self.searched, 1)

    def to_json(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class FaceCropper:
    """MediaPipe's full-range face detector (faces up to ~5 m away; the short-range one misses small faces)."""

    def __init__(self, min_confidence: float = 0.5, min_fraction: float = 0.25, size: int = IMAGE_SIZE) -> None:
        self.min_confidence, self.min_fraction, self.size = float(min_confidence), float(min_fraction), int(size)
        self._detector = None

    def _get(self):
        if self._detector is None:
            mp = _import_mediapipe()
            self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                        min_detection_confidence=self.min_confidence)
        return self._detector

    def detect(self, frame: np.ndarray) -> tuple[float, float, float, float, float] | None:
        """The most confident face of one RGB ``uint8 [H, W, 3]`` frame: ``(cx, cy, w, h, score)`` in pixels."""
        h, w = frame.shape[:2]
        with _LOCK:  # one MediaPipe graph, one frame at a time
            res = self._get().process(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
        if not res.detections:
            return None
        best = max(res.detections, key=lambda d: d.score[0])
        b = best.location_data.relative_bounding_box
        return ((b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h, b.width * w, b.height * h, float(best.score[0]))

    def box(self, frames: np.ndarray) -> FaceBox | None:
        """One square for the clip (``uint8 [T, H, W, 3]``), or None when fewer than ``min_fraction`` of the
        frames hold a face."""
        found = [d for d in (self.detect(f) for f in frames) if d is not None]
        if not found or len(found) / len(frames) < self.min_fraction:
            return None
        cx, cy, _, fh, _ = np.median(np.array(found), axis=0)
        side = SIDE_OVER_FACE * fh
        return FaceBox(float(cx - FACE_CENTRE[0] * side), float(cy - FACE_CENTRE[1] * side), float(side),
                       len(found), len(frames), float(np.mean([d[4] for d in found])))

    def crop(self, frames: np.ndarray, box: FaceBox) -> np.ndarray:
        """Every frame cut with ``box`` and resized to ``size``: ``uint8 [T, size, size, 3]`` (black outside the picture)."""
        from PIL import Image

        t, h, w, _ = frames.shape
        side = max(int(round(box.side)), 1)
        x0, y0 = int(round(box.x0)), int(round(box.y0))
        canvas = np.zeros((t, side, side, 3), np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
        if sx1 > sx0 and sy1 > sy0:
            canvas[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frames[:, sy0:sy1, sx0:sx1, :3]
        if side == self.size:
            return canvas
        return np.stack([np.asarray(Image.fromarray(c).resize((self.size, self.size), Image.BILINEAR)) for c in canvas])
