"""``maskworks predict audiovisual/emotion`` and ``maskworks eval audiovisual/emotion``: argparse over the
emotion job (``domains/audiovisual/emotion.py``) and the study (``domains/audiovisual/evaluate.py``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

WEIGHTS_HELP = ("model.safetensors of a `maskworks train audiovisual/emotion` run, or its run folder (default: the "
                "shipped classifier, fine-tuned on 15 RAVDESS clips of 2 actors; see data/weights/hicmae-emotion-ravdess.json)")
PRETRAINED_HELP = ("model.safetensors of a `maskworks train audiovisual/hicmae` run (default: the shipped one, "
                   "pre-trained on the same 15 clips)")


def predict(argv: list[str]) -> int:
    from maskworks.apps.commands.common import add_batch_options, run_predict
    from maskworks.domains.audiovisual.emotion import SUFFIXES, EmotionRecognizer

    p = argparse.ArgumentParser(prog="maskworks predict audiovisual/emotion", description=
                                "Read the emotion of each recording: a video with a face and a voice, a video without "
                                "sound, or an audio file. The face is found with MediaPipe and cropped to 160 px; the "
                                "sound becomes a 128-bin log-mel spectrogram; 2.56 s windows are classified by a "
                                "fine-tuned HiCMAE and averaged. Writes <name>.json (probabilities, which modality was "
                                "used, what voice and face say alone, their contributions, notes), "
                                "<name>_probabilities.png and, with the pre-trained model, <name>_spectrogram.png and "
                                "<name>_faces.png (masked and rebuilt inputs). Research use only.")
    add_batch_options(p, what=f"video or audio files ({', '.join(SUFFIXES)}) or folders of them")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--pretrained", help=PRETRAINED_HELP)
    p.add_argument("--no-reconstruction", action="store_true",
                   help="skip the pre-trained model's masked/rebuilt pictures (faster; the classifier is unchanged)")
    p.add_argument("--windows", type=int, help="number of 2.56 s windows spread over each recording (default: one "
                   "per 2.56 s, at most 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the masks in the reconstruction pictures (default 0)")
    p.add_argument("--face", choices=["detect", "as_is"], default="detect",
                   help="detect: find and crop the face with MediaPipe (default); as_is: the videos are 160 px face "
                        "crops already, as in the shipped clips")
    a = p.parse_args(argv)
    job = EmotionRecognizer.load(a.weights, False if a.no_reconstruction else a.pretrained, a.device)

    def describe(item, r) -> str:
        j = r.to_json()
        return f"{j['emotion']} ({j['probabilities'][j['emotion']]:.2f}) from {j['used']}"

    return run_predict(a, SUFFIXES, lambda f: job.predict_file(f, windows=a.windows, seed=a.seed, face=a.face),
                       "audiovisual/emotion", describe=describe)


def _progress(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    bars: dict = {}

    def update(tag: str, i: int, n: int) -> None:
        bar = bars.get(tag)
        if bar is None:
            bar = bars[tag] = tqdm(desc=f"encoding windows ({tag})", total=n, unit="window")
        bar.n = i
        bar.refresh()

    return update, lambda: [b.close() for b in bars.values()]


def classifier_on_folder(job, root: str, split: str | None, face: str) -> dict:
    """The shipped (or given) classifier on every labelled recording whose emotion it knows; recordings it
    was trained on are counted apart."""
    from maskworks.domains.audiovisual.data import read_av_folder
    from maskworks.domains.audiovisual.evaluate import recall_scores

    try:
        seen = {e.name for e in read_av_folder(job.classifier_root)} if job.classifier_root else set()
    except Exception:  # noqa: BLE001 - its training folder is not on this machine: nothing to exclude
        seen = set()
    rows, unknown = [], []
    for e in read_av_folder(root, split):
        if not e.label:
            continue
        if e.label not in job.classes:
            unknown.append(e.name)
            continue
        r = job.predict_file(e.clip or e.audio, face=face)
        rows.append({"recording": e.name, "label": e.label, "emotion": r.top, "used": r.used,
                     "seen_in_training": e.name in seen})
    res = {"classes": job.classes, "recordings": len(rows), "not_in_its_classes": unknown}
    for part, sel in (("unseen", [r for r in rows if not r["seen_in_training"]]), ("all", rows)):
        if sel:
            res[part] = recall_scores([job.classes.index(r["label"]) for r in sel],
                                      [job.classes.index(r["emotion"]) for r in sel], job.classes)
    res["rows"] = rows
    return res


def emotion(argv: list[str]) -> int:
    import torch

    from maskworks.core.io import resolve_shipped
    from maskworks.core.training.checkpoint import weights_metadata
    from maskworks.domains.audiovisual.emotion import SHIPPED_PRETRAINED, EmotionRecognizer
    from maskworks.domains.audiovisual.evaluate import ARMS, fmt_table, jsonable, study, study_set
    from maskworks.domains.audiovisual.finetune import load_backbone
    from maskworks.domains.audiovisual.hicmae import HiCMAEClassifier
    from maskworks.domains.audiovisual.pretrain import hicmae_kwargs

    p = argparse.ArgumentParser(prog="maskworks eval audiovisual/emotion", description=
                                "The emotion study on a labelled folder (clips/ and/or audio/ + labels.csv with an "
                                "emotion column, optionally actor and split): unweighted and weighted average recall "
                                "(UAR, WAR) of the pre-trained HiCMAE's features against the same network randomly "
                                "initialised (--random-seeds), for audio + video and for each modality alone, with a "
                                "fresh fine-tuning head per fold (backbone frozen) and the majority class as a floor. "
                                "Folds hold out one actor each when the folder has two or more actors, else one "
                                "recording each (said so: not speaker-independent). Audio-only folders work (the "
                                "audio arm runs). Then the shipped (or --weights) classifier is run on the folder as "
                                "it is, with recordings it was trained on counted apart.")
    p.add_argument("--data", required=True, help="the folder (shipped:audiovisual/ravdess is the shipped one)")
    p.add_argument("--split", dest="subset", help="use only the rows of this split column value (default: all rows)")
    p.add_argument("--folds", choices=["auto", "actor", "clip", "both"], default="auto",
                   help="auto: leave one actor out when possible, else one recording (default); both: run both")
    p.add_argument("--pretrained", help=PRETRAINED_HELP)
    p.add_argument("--weights", help=WEIGHTS_HELP + "; evaluated on the folder as it is")
    p.add_argument("--no-classifier", action="store_true", help="skip running the fine-tuned classifier on the folder")
    p.add_argument("--windows", type=int, default=3, help="2.56 s windows per recording, averaged (default 3)")
    p.add_argument("--min-per-class", type=int, default=2, help="leave out emotions with fewer recordings (default 2: "
                   "a class needs one to learn from and one to test)")
    p.add_argument("--random-seeds", type=int, default=3, help="random initialisations to compare with (default 3)")
    p.add_argument("--steps", type=int, default=200, help="training steps of each fold's head (full batch, default 200)")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                   help="which inputs to compare (default: audio+video audio video)")
    p.add_argument("--detect-faces", action="store_true",
                   help="find and crop faces with MediaPipe (default: the clips are face crops already, as shipped)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    a = p.parse_args(argv)
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pre = resolve_shipped(a.pretrained or SHIPPED_PRETRAINED)
    meta = weights_metadata(pre if pre.is_file() else pre / "model.safetensors")
    st = study_set(a.data, a.subset, a.windows, a.min_per_class, "detect" if a.detect_faces else "none")
    kw = hicmae_kwargs(meta)

    def build(seed: int | None) -> HiCMAEClassifier:
        torch.manual_seed(0 if seed is None else 1000 + seed)
        m = HiCMAEClassifier(len(st.classes), **kw)
        if seed is None:
            load_backbone(m, pre)
        return m.to(dev)

    update, close = _progress(a.progress)
    res = study(build(None), build, st, dev, a.folds, a.random_seeds, a.steps, a.arms, update)
    close()
    res |= {"data_folder": str(a.data), "subset": a.subset, "pretrained": str(a.pretrained or SHIPPED_PRETRAINED)}
    print(fmt_table(res))
    if not a.no_classifier:
        job = EmotionRecognizer.load(a.weights, False, a.device)
        c = classifier_on_folder(job, a.data, a.subset, "detect" if a.detect_faces else "as_is")
        res["classifier"] = c | {"weights": job.weights["classifier"]}
        print(f"\nclassifier {job.weights['classifier']} on the folder as it is ({c['recordings']} recordings with an "
              f"emotion it knows; {len(c['not_in_its_classes'])} with other emotions left out):")
        for part in ("unseen", "all"):
            if part in c:
                print(f"  {part:<7} UAR {c[part]['uar']:.3f}  WAR {c[part]['war']:.3f}  n={c[part]['n']}")
        if "unseen" not in c:
            print("  every recording here was in its training set: these figures say nothing about unseen data")
    if a.json:
        Path(a.json).write_text(json.dumps(jsonable(res), indent=2))
    return 0
