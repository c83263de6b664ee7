"""The downstream task's labels on a box by hand, and the same-budget comparison's bookkeeping."""
import numpy as np
import torch
import trimesh

from maskworks.domains.nerf.labelling import augment_labelled, iou_per_class, labelled_grid, voxel_labels


def test_box_labels_top_bottom_sides_inside(tmp_path):
    trimesh.creation.box(extents=(1.0, 1.0, 1.0)).export(tmp_path / "box.ply")
    item = labelled_grid(tmp_path / "box.ply", size=16, up="z")
    lab = item.labels
    occ = np.argwhere(lab > 0)
    lo, hi = occ.min(0), occ.max(0)
    mid = (lo + hi) // 2
    assert lab[mid[0], mid[1], hi[2]] == 2 and lab[mid[0], mid[1], lo[2]] == 3  # top up-facing, bottom down-facing
    assert lab[lo[0], mid[1], mid[2]] == 4 and lab[mid[0], hi[1], mid[2]] == 4  # sides
    assert lab[mid[0], mid[1], mid[2]] == 1  # inside
    assert (lab[~item.valid] == 0).all()


def test_voxel_labels_thresholds_and_iou():
    occ = np.ones((4, 1, 1))
    ns = np.array([[0, 0, 1.0], [0, 0.9, -0.6], [1, 0, 0.4], [0, 0, 0]])[:, None, None, :]
    samples = np.array([3, 2, 1, 0])[:, None, None]
    assert voxel_labels(occ, ns, samples).ravel().tolist() == [2, 3, 4, 1]
    pred, lab = np.array([1, 1, 2, 0]), np.array([1, 2, 2, 0])
    iou = iou_per_class(pred, lab, np.ones(4, bool))
    assert np.isclose(iou[1], 0.5) and np.isclose(iou[2], 0.5) and iou[0] == 1.0 and np.isnan(iou[3])


def test_augmentation_moves_labels_with_the_grid():
    x = torch.rand(1, 4, 6, 6, 6)
    lab = (x[:, 3] > 0.5).long()  # labels tied to the input
    for k in range(4):
        for flip in range(3):
            xa, va, la = augment_labelled(x, torch.ones(1, 1, 6, 6, 6), lab, k, flip)
            assert torch.equal(la, (xa[:, 3] > 0.5).long())
