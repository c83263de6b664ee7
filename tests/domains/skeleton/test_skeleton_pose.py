"""Pose from a real video (MediaPipe 0.10.14, offline): landmarks where the person is, per-joint confidence,
layouts, and a clear refusal to classify when the body is not in view."""
import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.data import data_path

pytest.importorskip("mediapipe")
pytest.importorskip("maskworks.core.io.video")  # the shared video reader

CLIP = data_path("skeleton", "video", "ucf101_apply_eye_makeup_2s.mp4")  # 50 frames, 320x240, 25 fps


@pytest.fixture(scope="module")
def pose():
    from maskworks.domains.skeleton.pose import extract_pose

    return extract_pose(CLIP)


def test_pose_of_a_real_close_up(pose):
    """UCF101 'apply eye makeup': a face and a hand close to the camera, no legs in the picture."""
    assert len(pose.detected) == 50 and pose.fps == pytest.approx(25.0)
    assert pose.detected.mean() > 0.9
    d = pose.detected
    nose, eyes = pose.image_xy[d, 0], pose.image_xy[d][:, [2, 5]]
    # the face fills the upper right of the frame (x 200-300, y 0-120 px): the nose and eyes are found there
    assert (np.median(nose, axis=0) > [180, 0]).all() and (np.median(nose, axis=0) < [320, 140]).all()
    assert np.median(eyes[:, 0, 0]) > np.median(eyes[:, 1, 0])  # the subject's left eye is on the image's right
    assert np.median(pose.visibility[d][:, 0]) > 0.9  # nose seen
    assert np.median(pose.visibility[d][:, [27, 28]]) < 0.1  # ankles outside the picture: low confidence
    assert pose.body_in_view.sum() == 0
    skel = pose.skeleton()
    assert skel.layout.name == "mediapipe33" and skel.joints.shape == (1, 50, 33, 3)
    assert np.isfinite(skel.joints).all()
    head_up = skel.joints[0, d, 0, 1] - skel.joints[0, d][:, [23, 24], 1].mean(1)
    assert np.median(head_up) > 0.3  # world landmarks turned y-up: the nose is above the hips
    coco, score = pose.coco17()
    assert coco.shape == (50, 17, 2) and score.shape == (50, 17)
    np.testing.assert_array_equal(coco[:, 0], pose.image_xy[:, 0])
    j = pose.to_json()
    assert j["frames"] == 50 and j["frames_with_whole_body"] == 0 and j["pose_frames_per_second"] > 0


def test_pose_files_and_the_action_job_refuses_a_half_body(pose, tmp_path):
    path = pose.save(tmp_path / "p.npz")
    with np.load(path) as z:
        assert z["world_mediapipe33"].shape == (50, 33, 3) and z["keypoint_coco17"].shape == (50, 17, 2)
    from maskworks.domains.skeleton.actions import ActionRecognizer

    with pytest.raises(InputError, match="whole body .* in only 0 of 50 frames"):
        ActionRecognizer.load().predict_file(CLIP)
