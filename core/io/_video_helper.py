"""The decoding helper process of :mod:`maskworks.core.io.video` (``python -m maskworks.core.io._video_helper``).

Reads one JSON request per line on stdin, answers one JSON line on stdout followed by the raw RGB
bytes of the frames. It only decodes; every check that can be made on the header is made by the
parent first. Living in its own process lets the parent kill it when a damaged file hangs the decoder.
"""
from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    from maskworks.core.io.video import _DecodeFailure, decode_frames

    # the protocol gets its own copy of stdout; fd 1 goes to stderr, so anything a library prints
    # (decord has printed file contents: dmlc/decord#299) cannot corrupt the replies
    import os

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    for line in sys.stdin.buffer:
        req = json.loads(line)
        if req.get("_test_sleep_s"):  # lets the tests check the parent's time limit
            import time

            time.sleep(float(req["_test_sleep_s"]))
        try:
            frames, idx, ts, used = decode_frames(req["path"], np.asarray(req["indices"], np.int64), req["backend"],
                                                  None if req["size"] is None else tuple(req["size"]),
                                                  req.get("expected"), bool(req.get("estimated")))
        except _DecodeFailure as e:
            out.write((json.dumps({"ok": False, "problem": e.problem, "fix": e.fix}) + "\n").encode())
            out.flush()
            continue
        head = {"ok": True, "shape": list(frames.shape), "indices": idx.tolist(), "timestamps": ts.tolist(),
                "backend": used}
        out.write((json.dumps(head) + "\n").encode())
        out.write(frames.tobytes())
        out.flush()


if __name__ == "__main__":
    main()
