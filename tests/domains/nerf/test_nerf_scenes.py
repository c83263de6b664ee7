"""Posed images: reading folders and zips, pose checks naming the file, caps, and a radiance-field fit on a CPU."""
import json
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

from maskworks.core.io import InputError
from maskworks.domains.nerf import scenes
from maskworks.domains.nerf.fit import FitConfig, fit_radiance_grid
from maskworks.domains.nerf.grid import RadianceGrid
from maskworks.domains.nerf.render import Camera, look_at, render
from maskworks.domains.nerf.scenes import read_posed_images


def _scene_grid() -> RadianceGrid:
    """A red cube on a blue slab: something with parallax."""
    s = np.zeros((16, 16, 16), np.float32)
    rgb = np.zeros((16, 16, 16, 3), np.float32)
    s[5:11, 5:11, 6:12] = 400.0
    rgb[5:11, 5:11, 6:12] = [0.9, 0.2, 0.1]
    s[2:14, 2:14, 2:4] = 400.0
    rgb[2:14, 2:14, 2:4] = [0.1, 0.3, 0.9]
    return RadianceGrid(rgb, s, [-1, -1, -1], [1, 1, 1])


def write_scene(folder, views=20, size=24, rgba=True, poses=None):
    """Render ``views`` views around the scene grid into PNGs + transforms.json (NeRF-synthetic layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train").mkdir(exist_ok=True)
    g = _scene_grid()
    angle = math.radians(50)
    f = 0.5 * size / math.tan(angle / 2)
    frames = []
    for i in range(views):
        az = 2 * math.pi * i / views
        eye = 4.0 * np.array([math.cos(az), math.sin(az), 0.6 + 0.3 * math.sin(3 * az)])
        c2w = look_at(eye) if poses is None else poses[i]
        img = render(g, Camera(c2w, f, f, size / 2, size / 2, size, size), background=1.0)
        Image.fromarray((img * 255).round().astype(np.uint8)).convert("RGBA" if rgba else "RGB").save(folder / "train" / f"r_{i}.png")
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": np.asarray(c2w).tolist()})
    (folder / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return folder


def zip_folder(folder, path):
    with zipfile.ZipFile(path, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return path


def test_folder_and_zip_read_the_same(tmp_path):
    d = write_scene(tmp_path / "scene", views=4, size=16)
    a = read_posed_images(d)
    b = read_posed_images(zip_folder(d, tmp_path / "scene.zip"))
    assert a.images.shape == b.images.shape == (4, 16, 16, 3) and np.array_equal(a.images, b.images)
    assert a.white_background  # RGBA
    cam = a.cameras[0]
    assert math.isclose(cam.fx, 0.5 * 16 / math.tan(math.radians(25)), rel_tol=1e-9) and cam.cx == 8.0
    assert np.allclose(a.focus(), 0.0, atol=1e-6)  # every camera looks at the origin
    assert read_posed_images(d, downscale=2).images.shape == (4, 8, 8, 3)


def test_bad_poses_name_the_file_and_frame(tmp_path):
    d = write_scene(tmp_path / "s", views=3, size=8)
    meta = json.loads((d / "transforms_train.json").read_text())
    for bad, msg in [([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], None), ([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "orthonormal"),
                     ([[1, 0, 0, float("nan")], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "NaN"), ([[1, 0], [0, 1]], "shape"),
                     ([[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "determinant")]:
        meta["frames"][1]["transform_matrix"] = bad
        (d / "transforms_train.json").write_text(json.dumps(meta).replace("NaN", "NaN"))
        if msg is None:  # 3x4 is accepted
            read_posed_images(d)
            continue
        with pytest.raises(InputError, match=msg) as e:
            read_posed_images(zip_folder(d, tmp_path / "bad.zip"))
        assert "bad.zip:transforms_train.json" in str(e.value) and "frame 1" in str(e.value)
    meta["frames"][1]["transform_matrix"] = meta["frames"][0]["transform_matrix"]
    meta["frames"][1]["file_path"] = "../../etc/passwd"
    (d / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not in the folder"):
        read_posed_images(d)


def test_intrinsics_that_describe_no_camera_are_refused(tmp_path):
    # w = 0 or h = 0 was a ZeroDivisionError; a zero or negative focal length read as a camera
    d = write_scene(tmp_path / "s", views=2, size=8)
    meta = json.loads((d / "transforms_train.json").read_text())
    for patch, msg in [({"w": 0}, "does not describe the 8 x 8 images"), ({"h": 0}, "does not describe"),
                       ({"w": -8}, "does not describe"), ({"w": 1e-300}, "does not describe"),
                       ({"fl_x": 0}, "not positive"), ({"fl_x": -5.0}, "not positive"), ({"fl_x": 5, "fl_y": 0}, "not positive")]:
        (d / "transforms_train.json").write_text(json.dumps({**meta, **patch}))
        with pytest.raises(InputError, match=msg) as e:
            read_posed_images(d)
        assert "transforms_train.json" in str(e.value)
    (d / "transforms_train.json").write_text(json.dumps({**meta, "w": None, "cx": None, "fl_y": None}))  # null = absent
    cam = read_posed_images(d).cameras[0]
    assert cam.cx == 4.0 and cam.fy == cam.fx == pytest.approx(0.5 * 8 / math.tan(math.radians(25)))
    (d / "transforms_train.json").write_text(json.dumps({**meta, "w": 16, "h": 16}))  # images stored at half size
    assert read_posed_images(d).cameras[0].fx == pytest.approx(0.5 * 0.5 * 16 / math.tan(math.radians(25)))


def test_zip_caps_are_checked_before_reading(tmp_path, monkeypatch):
    z = zip_folder(write_scene(tmp_path / "s", views=3, size=8), tmp_path / "s.zip")
    monkeypatch.setattr(scenes, "MAX_ZIP_BYTES", 100)
    with pytest.raises(InputError, match="larger than the cap"):
        read_posed_images(z)
    monkeypatch.setattr(scenes, "MAX_ZIP_BYTES", 10 ** 9)
    monkeypatch.setattr(scenes, "MAX_ZIP_MEMBERS", 2)
    with pytest.raises(InputError, match="more than the cap"):
        read_posed_images(z)
    (tmp_path / "empty.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    monkeypatch.setattr(scenes, "MAX_ZIP_MEMBERS", 100)
    with pytest.raises(InputError, match="no transforms.json"):
        read_posed_images(tmp_path / "empty.zip")


def test_voxel_radiance_field_fit_generalises_to_held_out_views(tmp_path):
    """20 rendered views of a known grid; views 5 and 15 held out. The fit must reproduce them."""
    scene = read_posed_images(write_scene(tmp_path / "s", views=20, size=16))
    cfg = FitConfig(resolution=20, coarse_resolution=16, coarse_steps=40, steps=80, growth=(1.0,), rays=512,
                    samples=48, tv_weight=0.0)
    res = fit_radiance_grid(scene, cfg)
    assert res.views_train == 18 and res.views_test == 2
    from maskworks.domains.nerf.render import psnr

    blank = np.mean([psnr(truth, np.ones_like(truth)) for truth, _ in res.renders])  # the background alone
    assert res.heldout_psnr > 20.0 and res.heldout_psnr > blank + 8.0, (res.to_json(), blank)
    # the box found by the coarse stage encloses the object (the slab spans [-0.75, 0.75] in x and y)
    assert np.all(res.grid.bbox_min[:2] <= -0.7) and np.all(res.grid.bbox_max[:2] >= 0.7)


def test_read_input_fits_a_zip_and_says_how_well(tmp_path):
    from maskworks.domains.nerf.inputs import read_input

    z = zip_folder(write_scene(tmp_path / "s", views=10, size=12), tmp_path / "views.zip")
    tiny = FitConfig(resolution=12, coarse_resolution=8, coarse_steps=5, steps=5, growth=(1.0,), rays=128, samples=16)
    seen = []
    g = read_input(z, fit=tiny, progress=lambda step, total, rec: seen.append((step, total)))
    assert g.resolution[0] <= 12 and any("fitted to 9 views at 12x12; held-out PSNR" in n for n in g.notes)
    with pytest.raises(InputError, match="unsupported input"):
        read_input(tmp_path / "s" / "transforms_train.json")
