"""Audio-visual emotion folders: ``clips/`` (face videos with their sound) and/or ``audio/`` (speech) with
``labels.csv``, read through the shared readers (``maskworks.core.io.video`` / ``.audio``).

``labels.csv`` names a clip (column ``clip``, relative to the folder, e.g. ``clips/a.mp4``) and/or an
audio file (``audio``), the emotion (``emotion`` or ``label``) and optionally the speaker (``actor``
or ``speaker``) and a ``split``. A row with only ``audio`` is an audio-only sample; a row with a clip
takes its sound from ``audio`` when given (the shipped wavs are the clips' original tracks), else
from the clip. Without labels.csv every file in ``clips/`` (else ``audio/``) is listed unlabelled,
so unlabelled talking-face video can be pre-trained on as it is.

A sample is one 2.56 s window (:mod:`~maskworks.domains.audiovisual.features`); ``windows`` windows
are spread evenly over each recording (overlapping when it is short). Which window an item is
depends on its index only, so a resumed run reads the same data.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from maskworks.core.io import InputError, resolve_shipped
from maskworks.core.io.audio import AUDIO_SUFFIXES, AudioCaps, read_audio
from maskworks.core.io.video import VIDEO_SUFFIXES, VideoCaps, probe_video, read_frames
from maskworks.domains.audiovisual.features import (IMAGE_SIZE, NUM_FRAMES, SAMPLE_RATE, TARGET_FRAMES, fbank_window,
                                                    frame_indices, frame_times, frames_to_clip, is_silent, log_mel,
                                                    window_starts)

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
"""RAVDESS's eight emotions in its code order (emotion code = index + 1)."""

SYNONYMS = {"anger": "angry", "ang": "angry", "fear": "fearful", "fea": "fearful", "happiness": "happy", "joy": "happy",
            "hap": "happy", "sadness": "sad", "sad": "sad", "surprise": "surprised", "sur": "surprised",
            "disgusted": "disgust", "dis": "disgust", "neu": "neutral", "calmness": "calm", "ps": "surprised",
            "pleasant_surprise": "surprised", "pleasant surprise": "surprised"}


def canonical_emotion(label: str) -> str:
    """Lower case, and the usual spellings of other corpora mapped onto RAVDESS's names (anger -> angry, ...)."""
    s = label.strip().lower()
    return SYNONYMS.get(s, s)


def class_order(labels: list[str]) -> list[str]:
    """RAVDESS order for its emotions, then any other labels alphabetically."""
    present = {canonical_emotion(x) for x in labels if x}
    return [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))


@dataclass(frozen=True)
class AVEntry:
    name: str
    clip: Path | None
    audio: Path | None
    label: str
    actor: str
    split: str


def _col(row: dict, *names: str) -> str:
    for n in names:
        if row.get(n) not in (None, ""):
            return str(row[n]).strip()
    return ""


def read_av_folder(root: str | Path, split: str | None = None) -> list[AVEntry]:
    """The entries of a ``clips/`` and/or ``audio/`` + ``labels.csv`` folder (all, or one ``split``)."""
    root = resolve_shipped(root)
    if not root.is_dir():
        raise InputError(root, "is not a folder", "give a folder with clips/ and/or audio/ and labels.csv")
    table = root / "labels.csv"
    entries: list[AVEntry] = []
    if table.is_file():
        with table.open(newline="") as f:
            rows = list(csv.DictReader(f))
        cols = set(rows[0]) if rows else set()
        if not rows or not ({"clip", "audio", "file"} & cols) or not ({"emotion", "label"} & cols):
            raise InputError(table, "needs a clip and/or audio column (or file) and an emotion (or label) column",
                             "write a header such as 'clip,audio,emotion,actor' and one row per recording")
        for i, r in enumerate(rows, start=2):
            clip, audio = _col(r, "clip"), _col(r, "audio")
            if not clip and not audio:
                f_ = _col(r, "file")
                clip, audio = (f_, "") if Path(f_).suffix.lower() in VIDEO_SUFFIXES else ("", f_)
            paths = []
            for rel in (clip, audio):
                p = (root / rel) if rel else None
                if p is not None and not p.is_file():
                    raise InputError(table, f"line {i} names {rel!r}, which is not in {root.name}/",
                                     "fix the file name or remove the line")
                paths.append(p)
            if paths == [None, None]:
                raise InputError(table, f"line {i} names no clip or audio file", "fill the clip or audio column")
            name = Path(clip or audio).stem
            entries.append(AVEntry(name, paths[0], paths[1], canonical_emotion(_col(r, "emotion", "label")),
                                   _col(r, "actor", "speaker"), _col(r, "split")))
    else:
        clips = sorted(p for p in (root / "clips").glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) \
            if (root / "clips").is_dir() else []
        audios = {p.stem: p for p in sorted((root / "audio").glob("*")) if p.suffix.lower() in AUDIO_SUFFIXES} \
            if (root / "audio").is_dir() else {}
        if clips:
            entries = [AVEntry(p.stem, p, audios.get(p.stem), "", "", "") for p in clips]
        else:
            entries = [AVEntry(s, None, p, "", "", "") for s, p in audios.items()]
    if split is not None:
        entries = [e for e in entries if e.split == split]
    if not entries:
        raise InputError(root, f"holds no clips or audio files{f' in split {split!r}' if split else ''}",
                         "put face videos in clips/ and/or speech in audio/, listed in labels.csv")
    return entries


@dataclass
class Recording:
    """One entry decoded once: its face frames (``uint8 [T, 160, 160, 3]``, or None), the filter banks of
    its whole sound (``[frames, 128]``, or None when it has no or a silent sound track) and times."""

    frames: np.ndarray | None
    fps: float
    fbank: Tensor | None
    duration_s: float
    notes: list[str] = field(default_factory=list)


def load_recording(entry: AVEntry, face_crop: str = "none", caps: VideoCaps = VideoCaps(),
                   audio_caps: AudioCaps = AudioCaps(), cropper=None) -> Recording:
    """Decode an entry's face frames and sound. ``face_crop``: ``none`` (the clips are face crops
    already, as in the shipped layout: resized to 160 px) or ``detect`` (MediaPipe finds the face)."""
    notes: list[str] = []
    frames, fps, v_dur, info = None, 0.0, 0.0, None
    if entry.clip is not None:
        info = probe_video(entry.clip, caps)
        fps, v_dur = info.fps, info.duration_s
        clip = read_frames(entry.clip, np.arange(info.num_frames), info=info, caps=caps)
        frames = clip.frames
        if face_crop == "detect":
            from maskworks.domains.audiovisual.faces import FaceCropper

            cropper = cropper or FaceCropper()
            box = cropper.box(frames[:: max(1, len(frames) // 16)])
            frames = None if box is None else cropper.crop(frames, box)
            if box is None:
                notes.append("no face found")
        elif frames.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
            frames = (frames_to_clip(frames).permute(1, 2, 3, 0).numpy() * 255 + 0.5).astype(np.uint8)
    fbank, a_dur = None, 0.0
    source = entry.audio if entry.audio is not None else (entry.clip if entry.clip is not None and info.has_audio else None)
    if source is not None:
        audio = read_audio(source, SAMPLE_RATE, caps=audio_caps)
        a_dur = audio.duration_s
        if is_silent(audio.samples):
            notes.append("silent sound track")
        else:
            fbank = log_mel(audio.samples)
    elif entry.clip is not None:
        notes.append("no sound track")
    duration = v_dur if frames is not None else a_dur
    return Recording(frames, fps, fbank, duration or a_dur or v_dur, notes)


def window_inputs(rec: Recording, start_s: float) -> tuple[Tensor, Tensor, bool, bool]:
    """``(video [3, 16, 160, 160] in [0, 1], audio [1, 256, 128], has_video, has_audio)`` of the window at
    ``start_s``; zeros stand in for a missing modality."""
    if rec.frames is not None:
        idx = frame_indices(frame_times(start_s), rec.fps, len(rec.frames))
        video = frames_to_clip(rec.frames[idx])
    else:
        video = torch.zeros(3, NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE)
    audio = fbank_window(rec.fbank, start_s)[None] if rec.fbank is not None else torch.zeros(1, TARGET_FRAMES, 128)
    return video, audio, rec.frames is not None, rec.fbank is not None


class AVWindows(Dataset):
    """``windows`` 2.56 s windows per entry of a folder; items are dicts of tensors: ``video`` (``[3, 16,
    160, 160]`` in [0, 1]), ``audio`` (``[1, 256, 128]``, normalised), ``has_video``, ``has_audio``,
    ``label`` (index into ``classes``, -1 when unlabelled), ``entry``. Every entry is decoded once, at
    construction (the shipped set is about 100 MB of frames)."""

    def __init__(self, root: str | Path, split: str | None = None, windows: int = 1, classes: list[str] | None = None,
                 face_crop: str = "none", require: str = "any", caps: VideoCaps = VideoCaps(),
                 entries: list[AVEntry] | None = None) -> None:
        self.entries = entries if entries is not None else read_av_folder(root, split)
        self.windows = max(1, int(windows))
        self.recordings = [load_recording(e, face_crop, caps) for e in self.entries]
        keep = [i for i, r in enumerate(self.recordings) if _has(r, require)]
        if not keep:
            raise InputError(root, f"has no recording with {require.replace('+', ' and ')}",
                             "pre-training needs clips with both a face and sound" if require == "both" else
                             "check the files")
        self.skipped = [self.entries[i].name for i in range(len(self.entries)) if i not in keep]
        self.entries = [self.entries[i] for i in keep]
        self.recordings = [self.recordings[i] for i in keep]
        self.classes = classes if classes is not None else class_order([e.label for e in self.entries])
        self.starts = [window_starts(r.duration_s, self.windows) for r in self.recordings]

    def __len__(self) -> int:
        return len(self.entries) * self.windows

    def label_index(self, k: int) -> int:
        lab = self.entries[k].label
        return self.classes.index(lab) if lab in self.classes else -1

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        k, j = divmod(i, self.windows)
        video, audio, hv, ha = window_inputs(self.recordings[k], self.starts[k][j])
        return {"video": video, "audio": audio, "has_video": torch.tensor(hv), "has_audio": torch.tensor(ha),
                "label": torch.tensor(self.label_index(k)), "entry": torch.tensor(k)}


def _has(rec: Recording, require: str) -> bool:
    v, a = rec.frames is not None, rec.fbank is not None
    return {"any": v or a, "both": v and a, "audio": a, "video": v}[require]
