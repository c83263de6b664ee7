"""The emotion job: a video (face and voice) or an audio file -> emotion probabilities from a fine-tuned
HiCMAE, which modality they came from, what each modality says alone and contributes, and the
pre-trained HiCMAE's masked and rebuilt spectrogram and face frames.

The tab (``apps/tabs/audiovisual.py``), ``maskworks predict audiovisual/emotion``, the HTTP API and
Python users all call :meth:`EmotionRecognizer.predict_file`, so they give the same numbers.

A recording is cut into 2.56 s windows (up to ``MAX_WINDOWS``, spread evenly; a shorter one is padded
with silence and its last frame); the probabilities are the mean over windows. Faces are found with
MediaPipe and cropped as the training clips were. What the recording lacks is left out, never faked:
without a face (none found, or an audio file) the voice head answers, without sound (no track, or a
silent one) the face head answers, and the result says which (``used``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskworks.core.io import InputError, resolve_shipped
from maskworks.core.io.audio import AUDIO_SUFFIXES, AudioCaps, read_audio
from maskworks.core.io.video import VIDEO_SUFFIXES, VideoCaps, probe_video, read_frames
from maskworks.domains.audiovisual.data import EMOTIONS
from maskworks.domains.audiovisual.features import (IMAGE_SIZE, NUM_FRAMES, SAMPLE_RATE, TARGET_FRAMES, WINDOW_S,
                                                    fbank_window, frame_indices, frame_times, frames_to_clip,
                                                    is_silent, log_mel, normalize_video, window_starts)
from maskworks.domains.audiovisual.hicmae import BLOCKS, HiCMAE, HiCMAEClassifier

SHIPPED_CLASSIFIER = "shipped:weights/hicmae-emotion-ravdess.safetensors"
SHIPPED_PRETRAINED = "shipped:weights/hicmae-ravdess.safetensors"
SUFFIXES = tuple(sorted(VIDEO_SUFFIXES | AUDIO_SUFFIXES))
MAX_WINDOWS = 8
MAX_DETECT_SIDE = 640  # frames are decoded at most this large for face detection (crops come from them)
DEFAULT_VIDEO_CAPS = VideoCaps(max_duration_s=30 * 60)
DEFAULT_AUDIO_CAPS = AudioCaps(max_duration_s=30 * 60)
NOTICE = ("Research use only. This model recognises acted emotion in the way its tiny training set shows it; "
          "it is not a validated instrument and must not be used to judge people.")


@dataclass
class EmotionResult:
    """One recording's emotion reading. ``pictures`` holds PIL images: ``probabilities`` (bar plot),
    ``spectrogram`` and ``faces`` (the pre-trained HiCMAE's masked and rebuilt inputs) when present."""

    source: str
    kind: str  # "video" or "audio": what the file is
    used: str  # "audio+video", "audio" or "video": what the answer came from
    classes: list[str]
    probabilities: list[float]
    windows: list[dict]
    alone: dict[str, list[float]]
    contributions: dict[str, float] | None
    face: dict | None
    media: dict
    reconstruction: dict | None
    pictures: dict[str, Image.Image]
    notes: list[str]
    weights: dict
    notice: str

    @property
    def top(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]

    def to_json(self) -> dict:
        r = lambda xs: [round(float(x), 4) for x in xs]  # noqa: E731
        return {"file": Path(self.source).name, "kind": self.kind, "used": self.used, "emotion": self.top,
                "probabilities": dict(zip(self.classes, r(self.probabilities))),
                "alone": {k: dict(zip(self.classes, r(v))) for k, v in self.alone.items()},
                "contributions_to_top_logit": None if self.contributions is None else
                {k: round(float(v), 4) for k, v in self.contributions.items()},
                "windows": self.windows, "face": self.face, "media": self.media, "reconstruction": self.reconstruction,
                "not_in_training": [e for e in EMOTIONS if e not in self.classes], "notes": self.notes,
                "weights": self.weights, "notice": self.notice}

    def write(self, base: Path) -> list[Path]:
        """``<base>_probabilities.png``, and ``<base>_spectrogram.png`` / ``<base>_faces.png`` when drawn."""
        base = Path(base)
        base.parent.mkdir(parents=True, exist_ok=True)
        out = []
        for key in ("probabilities", "spectrogram", "faces"):
            if key in self.pictures:
                p = base.with_name(f"{base.name}_{key}.png")
                self.pictures[key].save(p)
                out.append(p)
        return out


def _sidecar(weights: str | Path) -> dict:
    try:
        return json.loads(resolve_shipped(str(weights)).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


class EmotionRecognizer:
    """The fine-tuned classifier and (optionally) the pre-trained HiCMAE that draws the reconstructions."""

    def __init__(self, classifier: HiCMAEClassifier, classes: list[str], pretrained: HiCMAE | None, weights: dict,
                 trained_on: str, device: torch.device) -> None:
        self.classifier, self.classes, self.pretrained = classifier.eval(), list(classes), pretrained
        self.weights, self.trained_on, self.device = weights, trained_on, device
        self.classifier_root: str | None = None
        self._cropper = None
        self._seen: set[str] | None = None

    @classmethod
    def load(cls, weights: str | Path | None = None, pretrained: str | Path | None | bool = None,
             device: str | torch.device | None = None) -> "EmotionRecognizer":
        """The shipped classifier (``weights=None``) or a ``maskworks train audiovisual/emotion`` run's
        weights; the shipped pre-trained HiCMAE for the pictures (``pretrained=None``), another run's, or
        none (``False``). On the GPU when there is one."""
        from maskworks.core.training.task import load_trained

        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        wpath = resolve_shipped(weights or SHIPPED_CLASSIFIER)
        task, model = load_trained(wpath, dev)
        if not isinstance(model, HiCMAEClassifier):
            raise ValueError(f"{wpath} is a {type(model).__name__}, not an emotion classifier "
                             "(train one with `maskworks train audiovisual/emotion`)")
        pre = None
        if pretrained is not False:
            ppath = resolve_shipped(pretrained or SHIPPED_PRETRAINED)
            _, pre = load_trained(ppath, dev)
            if not isinstance(pre, HiCMAE):
                raise ValueError(f"{ppath} is a {type(pre).__name__}, not a pre-trained HiCMAE")
        side = _sidecar(weights or SHIPPED_CLASSIFIER)
        trained_on = side.get("trained_on_short") or f"the labelled recordings in {task.cfg['data'].get('root')}"
        names = {"classifier": str(weights or SHIPPED_CLASSIFIER),
                 "pretrained": None if pretrained is False else str(pretrained or SHIPPED_PRETRAINED)}
        job = cls(model, task.cfg["data"]["classes"], pre, names, trained_on, dev)
        job.classifier_root = task.cfg["data"].get("root")  # its training folder (to tell seen recordings apart)
        return job

    @property
    def cropper(self):
        if self._cropper is None:
            from maskworks.domains.audiovisual.faces import FaceCropper

            self._cropper = FaceCropper()
        return self._cropper

    # -- reading ----------------------------------------------------------------------------------
    def _read_video(self, path: Path, windows: int | None, face: str, caps: VideoCaps, audio_caps: AudioCaps,
                    notes: list[str]) -> tuple[list[float], np.ndarray | None, np.ndarray | None, dict, dict | None, float]:
        info = probe_video(path, caps)
        duration = info.duration_s
        starts = window_starts(duration, windows or _auto_windows(duration))
        idx = np.stack([frame_indices(frame_times(s), info.fps, info.num_frames) for s in starts])  # [W, 16]
        uniq, inv = np.unique(idx, return_inverse=True)
        scale = min(1.0, MAX_DETECT_SIDE / max(info.width, info.height))
        size = None if scale >= 1 else (max(2, round(info.height * scale)), max(2, round(info.width * scale)))
        clip = read_frames(path, uniq, info=info, caps=caps, size=size)
        frames = clip.frames[inv.reshape(idx.shape)]  # [W, 16, h, w, 3]
        face_info = None
        crops = None
        if face == "as_is":
            crops = frames
        else:
            sample = frames.reshape(-1, *frames.shape[2:])
            pick = np.linspace(0, len(sample) - 1, min(16, len(sample))).round().astype(int)
            box = self.cropper.box(sample[pick])
            if box is None:
                notes.append("No face was found in the video (MediaPipe's face detector, in fewer than a quarter of "
                             "16 sampled frames): the emotion is read from the voice alone.")
                face_info = {"found": False}
            else:
                crops = np.stack([self.cropper.crop(w, box) for w in frames])
                s = 1.0 / scale if scale < 1 else 1.0
                face_info = {"found": True, "box_xywh": [round(box.x0 * s, 1), round(box.y0 * s, 1), round(box.side * s, 1),
                                                         round(box.side * s, 1)],
                             "frames_with_face": f"{box.found} of {box.searched}", "detector_score": round(box.score, 3)}
                if box.fraction < 0.75:
                    notes.append(f"A face was found in only {box.found} of {box.searched} sampled frames; the crop "
                                 "follows where it was.")
        fbank = None
        if info.has_audio:
            audio = read_audio(path, SAMPLE_RATE, caps=audio_caps)
            if is_silent(audio.samples):
                notes.append("The sound track is silent: the emotion is read from the face alone.")
            else:
                fbank = log_mel(audio.samples)
        else:
            notes.append("The video has no sound track: the emotion is read from the face alone.")
        media = {"video": info.to_json()}
        return starts, crops, fbank, media, face_info, duration

    def _read_audio(self, path: Path, windows: int | None, audio_caps: AudioCaps, notes: list[str]):
        audio = read_audio(path, SAMPLE_RATE, caps=audio_caps)
        if is_silent(audio.samples):
            raise InputError(path, "is silent (below -60 dBFS throughout)", "give a recording with speech in it")
        duration = audio.duration_s
        starts = window_starts(duration, windows or _auto_windows(duration))
        notes.append("An audio file: the emotion is read from the voice alone.")
        media = {"audio": audio.info.to_json() | {"resampled_to": SAMPLE_RATE}}
        return starts, None, log_mel(audio.samples), media, None, duration

    # -- the job ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_file(self, path: str | Path, windows: int | None = None, seed: int = 0, face: str = "detect",
                     caps: VideoCaps = DEFAULT_VIDEO_CAPS, audio_caps: AudioCaps = DEFAULT_AUDIO_CAPS) -> EmotionResult:
        """Read, classify and draw one recording. ``windows``: how many 2.56 s windows (default: one per
        2.56 s, at most 8); ``seed``: the masks of the reconstruction pictures; ``face``: ``detect``
        (MediaPipe finds and crops the face) or ``as_is`` (the frames are face crops already)."""
        path = Path(path)
        if face not in ("detect", "as_is"):
            raise ValueError(f"face must be 'detect' or 'as_is', got {face!r}")
        if windows is not None and not 1 <= int(windows) <= 64:
            raise InputError(path, f"windows={windows} is outside 1-64", "give a number of 2.56 s windows from 1 to 64")
        suffix = path.suffix.lower()
        notes: list[str] = []
        if suffix in AUDIO_SUFFIXES:
            kind = "audio"
            starts, crops, fbank, media, face_info, duration = self._read_audio(path, windows, audio_caps, notes)
        elif suffix in VIDEO_SUFFIXES:
            kind = "video"
            try:
                starts, crops, fbank, media, face_info, duration = self._read_video(path, windows, face, caps, audio_caps, notes)
            except InputError as e:
                if "audio-only" not in e.problem:
                    raise
                kind, notes = "audio", []  # an .mp4/.webm holding only sound (a microphone recording)
                starts, crops, fbank, media, face_info, duration = self._read_audio(path, windows, audio_caps, notes)
        else:
            raise InputError(path, f"has the suffix {suffix or '(none)'!r}, which is neither audio nor video",
                             f"give one of {', '.join(SUFFIXES)}")
        if crops is None and fbank is None:
            why = "no face found" if face_info is not None else "no picture"
            why += "; silent sound track" if any("silent" in n for n in notes) else "; no sound track"
            raise InputError(path, f"has neither a face the detector finds nor sound ({why})",
                             "give a clip that shows a face, or one with speech")
        if duration < WINDOW_S:
            notes.append(f"The recording lasts {duration:.2f} s, less than one 2.56 s window: it is padded "
                         "(silence, and its last frame repeated).")
        video = None if crops is None else normalize_video(torch.stack([frames_to_clip(c) for c in crops]))
        audio = None if fbank is None else torch.stack([fbank_window(fbank, s)[None] for s in starts])
        dev = self.device
        out = self.classifier(None if video is None else video.to(dev), None if audio is None else audio.to(dev))
        probs = torch.softmax(out.logits.float(), -1).cpu()  # [W, C]
        mean = probs.mean(0)
        used = out.used[0]
        alone: dict[str, list[float]] = {}
        contributions = None
        if used == "audio+video":
            alone = {"voice alone": torch.softmax(out.head.logits_audio.float(), -1).mean(0).tolist(),
                     "face alone": torch.softmax(out.head.logits_video.float(), -1).mean(0).tolist()}
            c = self.classifier.head.contributions(out.features).float().mean(0).cpu()  # [4, C]
            top = int(mean.argmax())
            contributions = {name: float(c[i, top]) for i, name in enumerate(BLOCKS)}
        win = [{"start_s": round(s, 3), "end_s": round(s + WINDOW_S, 3), "emotion": self.classes[int(p.argmax())],
                "probability": round(float(p.max()), 4)} for s, p in zip(starts, probs)]
        notes += self._calibration_notes(mean)
        if path.stem in self.training_names():
            notes.append(f"A recording named {path.stem} was in this classifier's training set: the answer shows what "
                         "it learnt, not how it does on recordings it never saw.")
        from maskworks.domains.audiovisual.viz import face_rows, probability_plot, spectrogram_rows

        pictures = {"probabilities": probability_plot(self.classes, mean.tolist(), used, alone)}
        recon = None
        mid = len(starts) // 2
        if self.pretrained is not None and video is not None and audio is not None:
            recon, pictures["faces"], pictures["spectrogram"] = self._reconstruct(crops[mid], audio[mid], seed)
        else:
            if audio is not None:
                pictures["spectrogram"] = spectrogram_rows(audio[mid], None, None, (16, 16))
            if crops is not None:
                pictures["faces"] = face_rows(frames_to_clip(crops[mid]), None, None, (2, 16, 16))
            if self.pretrained is not None:
                notes.append("HiCMAE rebuilds masked inputs from both modalities together, so no reconstruction is "
                             "drawn for a recording with only one of them.")
        return EmotionResult(str(path), kind, used, self.classes, mean.tolist(), win, alone, contributions, face_info,
                             media | {"duration_s": round(duration, 3), "windows": len(starts)}, recon, pictures,
                             notes, self.weights, f"{NOTICE} Trained on {self.trained_on}.")

    def _reconstruct(self, crop: np.ndarray, audio: torch.Tensor, seed: int):
        from maskworks.domains.audiovisual.viz import face_rows, reconstruction_scores, spectrogram_rows

        m = self.pretrained
        clip = frames_to_clip(crop)[None].to(self.device)
        a = audio[None].to(self.device)
        vm, am = m.make_masks(1, torch.Generator().manual_seed(int(seed)))
        vm, am = vm.to(self.device), am.to(self.device)
        rec_v, rec_a = m.reconstruct(normalize_video(clip), a, vm, am, video_target=clip)
        scores = {k: round(v, 5) for k, v in reconstruction_scores(m, clip, a, vm, am).items()}
        scores |= {"seed": int(seed), "video_tubes_seen": f"{vm.num_keep} of {vm.num_tokens}",
                   "audio_patches_seen": f"{am.num_keep} of {am.num_tokens}"}
        return (scores, face_rows(clip[0].cpu(), vm.mask[0].cpu(), rec_v[0].float().cpu(), m.video.patch_size),
                spectrogram_rows(a[0].cpu(), am.mask[0].cpu(), rec_a[0].float().cpu(), m.audio.patch_size))

    def training_names(self) -> set[str]:
        """File names (without suffix) of the recordings the classifier was trained on, when its training
        folder is on this machine (else empty)."""
        if self._seen is None:
            from maskworks.domains.audiovisual.data import read_av_folder

            try:
                entries = read_av_folder(self.classifier_root) if self.classifier_root else []
            except Exception:  # noqa: BLE001 - its training folder is not here: nothing to tell apart
                entries = []
            self._seen = {Path(f).stem for e in entries for f in (e.clip, e.audio) if f is not None}
        return self._seen

    def _calibration_notes(self, mean: torch.Tensor) -> list[str]:
        notes = []
        missing = [e for e in EMOTIONS if e not in self.classes]
        if missing:
            notes.append(f"The model never saw {', '.join(missing)}: it cannot answer those.")
        if float(mean.max()) < 1.5 / len(self.classes):
            notes.append("No emotion stands out: the probabilities are close to even.")
        return notes


def _auto_windows(duration_s: float) -> int:
    return max(1, min(MAX_WINDOWS, math.ceil(duration_s / WINDOW_S - 1e-6)))


__all__ = ["EmotionRecognizer", "EmotionResult", "SUFFIXES", "SHIPPED_CLASSIFIER", "SHIPPED_PRETRAINED", "NOTICE",
           "IMAGE_SIZE", "NUM_FRAMES", "TARGET_FRAMES"]
