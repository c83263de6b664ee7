"""GraphMAE, SkeletonMAE and STRL: values that could fail (hand computations, invariances, learning)."""
import math

import numpy as np
import pytest
import torch

from maskworks.core.masking import BodyPartMasking, RandomMasking
from maskworks.domains.skeleton.graph_mae import GraphMAE
from maskworks.domains.skeleton.layouts import NTU25
from maskworks.domains.skeleton.skeleton_mae import SkeletonMAE, batched_edges, body_part_mask
from maskworks.domains.skeleton.strl import STRL, multiscale_temporal_pool


def karate():
    from torch_geometric.datasets import KarateClub  # shipped inside PyG: no download

    return KarateClub()[0]


def sce_by_hand(pred: np.ndarray, target: np.ndarray, beta: float) -> float:
    total = 0.0
    for p, t in zip(pred, target):
        cos = float(np.dot(p, t)) / (math.sqrt(float(np.dot(p, p))) * math.sqrt(float(np.dot(t, t))))
        total += (1.0 - cos) ** beta
    return total / len(pred)


def test_mask_token_and_remask_touch_exactly_the_masked_nodes():
    torch.manual_seed(0)
    g = karate()
    model = GraphMAE(g.num_features, hidden=16).eval()
    mask = RandomMasking(0.5)(1, (g.num_nodes,), generator=torch.Generator().manual_seed(3)).mask[0]
    x_in = model.mask_features(g.x, mask)
    assert torch.equal(x_in[~mask], g.x[~mask])
    assert torch.equal(x_in[mask], model.mask_token.detach().expand(int(mask.sum()), -1))
    codes = model.forward_encoder(g.x, g.edge_index, mask)
    re = model.remask(codes, mask)
    assert (re[mask] == 0).all()
    assert torch.equal(re[~mask], model.encoder_to_decoder(codes)[~mask])
    assert (re[~mask].abs().sum(1) > 0).all()


def test_sce_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    mask = torch.tensor([True, False, True, True, False, False, True])
    model = GraphMAE(5, hidden=8, beta=2.0)
    got = model.forward_loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32), mask)
    assert float(got) == pytest.approx(sce_by_hand(pred[mask.numpy()], target[mask.numpy()], 2.0), rel=1e-5)
    model.beta = 3.0
    got3 = model.forward_loss(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32), mask)
    assert float(got3) == pytest.approx(sce_by_hand(pred[mask.numpy()], target[mask.numpy()], 3.0), rel=1e-5)


def test_permuting_the_graph_permutes_node_outputs():
    torch.manual_seed(0)
    g = karate()
    model = GraphMAE(g.num_features, hidden=16).eval()
    mask = torch.zeros(g.num_nodes, dtype=torch.bool)
    mask[::3] = True
    perm = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(5))
    inv = torch.argsort(perm)  # new node i is old node perm[i]
    with torch.no_grad():
        out = model(g.x, g.edge_index, mask)
        out_p = model(g.x[perm], inv[g.edge_index], mask[perm])
    torch.testing.assert_close(out_p.codes, out.codes[perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_p.recon, out.recon[perm], atol=1e-5, rtol=1e-5)
    assert float(out_p.loss) == pytest.approx(float(out.loss), rel=1e-5)


def test_graphmae_learns_from_neighbours_on_karate_club():
    """Node features = the club each member joined (one-hot, 4 clubs): a hidden member's club must be
    rebuilt from the codes of its neighbours. On masks drawn after training, the SCE is far below that of
    predicting the clubs' frequencies (the best guess that ignores the graph)."""
    torch.manual_seed(0)
    g = karate()
    x = torch.nn.functional.one_hot(g.y, 4).float()
    model = GraphMAE(4, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    strategy = RandomMasking(0.3)
    first = None
    for _ in range(200):
        loss = model(x, g.edge_index, strategy(1, (g.num_nodes,), generator=gen).mask[0]).loss
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    gen = torch.Generator().manual_seed(99)
    masks = [strategy(1, (g.num_nodes,), generator=gen).mask[0] for _ in range(20)]
    with torch.no_grad():
        learned = np.mean([float(model(x, g.edge_index, m).loss) for m in masks])
        frequencies = np.mean([float(model.forward_loss(x.mean(0).expand_as(x), x, m)) for m in masks])
    assert frequencies == pytest.approx(0.236, abs=0.01)
    assert learned < 0.5 * frequencies < first


def test_body_part_masks_hide_whole_parts_the_same_in_every_segment():
    parts = {k: list(v) for k, v in NTU25.parts.items()}
    strategy = BodyPartMasking(2 / 6, parts=parts)
    m = body_part_mask(strategy, 64, 5, 2, torch.Generator().manual_seed(0))
    assert m.shape == (64, 5, 25)
    assert (m == m[:, :1]).all()  # same joints in every segment
    for row in m[:, 0]:
        hidden = [name for name, js in parts.items() if row[js].all()]
        assert len(hidden) == 2
        assert all(not row[js].any() for name, js in parts.items() if name not in hidden)  # no part cut
    combos = {tuple(r.tolist()) for r in m[:, 0]}
    assert len(combos) > 8  # parts drawn at random (15 pairs possible)
    again = body_part_mask(strategy, 64, 5, 2, torch.Generator().manual_seed(0))
    assert torch.equal(m, again)


def test_skeleton_mae_shapes_loss_and_unmasked_path():
    torch.manual_seed(0)
    model = SkeletonMAE(hidden=16).eval()
    x = torch.randn(3, 8, 25, 12)
    mask = model.draw_mask(3, 8, torch.Generator().manual_seed(1))
    out = model(x, mask)
    assert out.recon.shape == x.shape and out.loss.ndim == 0
    flat_mask = mask.reshape(-1)
    manual = model.graph.forward_loss(out.recon.reshape(-1, 12), x.reshape(-1, 12), flat_mask)
    assert float(manual) == pytest.approx(float(out.loss))
    codes = model.encode(x)
    assert codes.shape == (3, 8, 25, 16)
    # one window alone gives the same codes as in a batch (LayerNorm, no batch statistics)
    torch.testing.assert_close(model.encode(x[1:2]), codes[1:2], atol=1e-5, rtol=1e-5)
    assert batched_edges(NTU25.edge_index(), 2, 25).shape == (2, 96)


def test_multiscale_temporal_pool_by_hand():
    h = torch.arange(2 * 4 * 3 * 2, dtype=torch.float32).reshape(2, 4, 3, 2)  # [G, S, V, D]
    out = multiscale_temporal_pool(h, (1, 2))
    seg = h.mean(2)  # [G, S, D]
    halves = torch.stack([seg[:, :2].mean(1), seg[:, 2:].mean(1)], dim=2)  # [G, D, 2]: each feature's two bins
    torch.testing.assert_close(out, torch.cat([seg.mean(1), halves.flatten(1)], dim=1))


def test_strl_ignores_absent_persons_and_takes_the_pretrained_encoder():
    torch.manual_seed(0)
    mae = SkeletonMAE(hidden=16)
    strl = STRL(num_classes=4, hidden=16, segments=8).eval()
    strl.load_encoder(mae.state_dict())
    x = torch.randn(2, 2, 8, 25, 12)
    torch.testing.assert_close(strl.encode(x[:, 0]), mae.eval().encode(x[:, 0]))
    valid = torch.tensor([[True, False], [True, True]])
    logits = strl(x, valid)
    assert logits.shape == (2, 4)
    x2 = x.clone()
    x2[0, 1] = torch.randn(8, 25, 12) * 10  # whatever sits in an absent person's slot
    torch.testing.assert_close(strl(x2, valid), logits)
    assert strl.probe_features(x, valid).shape == (2, 16 * 7)
    with pytest.raises(ValueError):
        strl.load_encoder({"foo": torch.zeros(1)})


def test_bone_features_round_trip_and_keep_their_length():
    from maskworks.data import data_path
    from maskworks.domains.skeleton.data import PARENTS, features_to_joints, prepare, window
    from maskworks.domains.skeleton.io import read_skeleton
    from maskworks.domains.skeleton.layouts import NTU25
    from maskworks.domains.skeleton.sequence import normalize, take_window

    assert PARENTS[NTU25.index("left_elbow")] == NTU25.index("left_shoulder") and PARENTS[0] == -1
    prep = prepare(read_skeleton(data_path("skeleton", "cmu", "seq", "06_09.npy")))
    x = window(prep, 8, 32, 4)[0]  # [S, V, 12]
    want, _ = normalize(take_window(prep.joints, 8, 32), NTU25, scale=False)
    np.testing.assert_allclose(features_to_joints(x, 4), want[0], atol=1e-5)
    np.testing.assert_allclose(features_to_joints(torch.from_numpy(x), 4).numpy(), want[0], atol=1e-5)
    lengths = np.linalg.norm(x.reshape(8, 25, 4, 3), axis=-1)[:, 1:]  # every bone but the root's travel
    assert (lengths.std(axis=(0, 2)) < 0.01).all()  # mocap bones keep their length (to 5 mm; torso ~0.47 m)


def test_drawn_reconstruction_is_exact_for_the_right_directions():
    from maskworks.domains.skeleton.data import features_to_joints
    from maskworks.domains.skeleton.skeleton_mae import drawn_joints, reconstruction_errors

    torch.manual_seed(0)
    x = torch.randn(2, 8, 25, 12)
    model = SkeletonMAE(hidden=8).eval()
    mask = model.draw_mask(2, 8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(drawn_joints(x, mask, 3.0 * x, 4), features_to_joints(x, 4))  # length from the truth
    wrong = drawn_joints(x, mask, -x, 4)
    assert not torch.allclose(wrong, features_to_joints(x, 4))
    model.feature_mean.copy_(x[0, 0])  # a "mean pose" equal to the first segment of the first window
    r = reconstruction_errors(model, x[:1, :1])
    assert r["sce_mean_pose"] == pytest.approx(0.0, abs=1e-6) and r["error_mean_pose"] == pytest.approx(0.0, abs=1e-5)
    assert r["sce"] > 0.01
