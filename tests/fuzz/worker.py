"""Runs fuzz cases through the jobs the tabs and CLIs use, one JSON line per case (``python worker.py``).

Reads ``{"path": ..., "job": ...}`` lines on stdin, answers ``{"status": "ok" | "input" | "crash", ...}``.
Every job is loaded before the first case, so a case's time is the job's time alone.
"""
from __future__ import annotations

import json
import sys
import traceback


def load_jobs() -> dict:
    import torch

    from maskworks.core.io import InputError  # noqa: F401 - imported once before any case
    from maskworks.core.tasks.reconstruct import ImageReconstructor
    from maskworks.domains.lidar.detection.predict import ScanDetector
    from maskworks.domains.medical.anomaly.detector import AnomalyDetector
    from maskworks.domains.nerf.reconstruct import GridReconstructor
    from maskworks.domains.audiovisual.emotion import EmotionRecognizer
    from maskworks.domains.skeleton.actions import ActionRecognizer
    from maskworks.domains.video.reconstruct import VideoReconstructor

    torch.set_num_threads(1)
    anomaly, image, lidar = AnomalyDetector.load(device="cpu"), ImageReconstructor.load(device="cpu"), ScanDetector.load(device="cpu")
    video = VideoReconstructor.load(device="cpu")
    from maskworks.data import data_path

    video.predict_file(data_path("video", "kinetics_ucf", "videos", "apply_eye_makeup.avi"))  # starts its decoder process
    nerf = GridReconstructor.load(device="cpu")
    skeleton = ActionRecognizer.load(device="cpu")
    emotion = EmotionRecognizer.load(device="cpu")
    return {"nerf/reconstruct": lambda p: nerf.predict_file(p, resolution=32), "medical/anomaly": anomaly.analyse_file, "image-mae": image.predict_file,
            "lidar/detection": lambda p: lidar.predict_file(p, tta=False), "video/videomae": video.predict_file,
            "skeleton/actions": skeleton.predict_file,
            "audiovisual/emotion": emotion.predict_file}


def main() -> None:
    from maskworks.core.io import InputError

    jobs = load_jobs()
    print(json.dumps({"status": "ready"}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            result = jobs[case["job"]](case["path"])
            json.dumps(result.to_json(), default=str)  # the report must serialise, as the CLI writes it
            out = {"status": "ok"}
        except InputError as e:
            out = {"status": "input", "message": str(e)}
        except Exception as e:  # noqa: BLE001 - what the fuzz test looks for
            out = {"status": "crash", "message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
