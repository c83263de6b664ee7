"""Grids from meshes: occupancy and colour of a known box, PLY/OBJ/GLB alike, face caps from headers."""
import numpy as np
import pytest
import trimesh

from maskworks.core.io import InputError
from maskworks.domains.nerf import mesh as mesh_mod
from maskworks.domains.nerf.mesh import count_faces, grid_from_mesh


def _box(tmp_path, ext, colour=(200, 40, 20, 255)):
    m = trimesh.creation.box(extents=(2.0, 1.0, 1.0))  # x 2 long, y and z 1
    m.visual.vertex_colors = np.tile(colour, (len(m.vertices), 1))
    m.visual.vertex_colors[0] = (201, 40, 20, 255)  # not a constant colour (a constant one is dropped as default)
    p = tmp_path / f"box.{ext}"
    m.export(p)
    return p


@pytest.mark.parametrize("ext", ["ply", "obj", "glb"])
def test_box_occupancy_colour_and_density(tmp_path, ext):
    g = grid_from_mesh(_box(tmp_path, ext), resolution=32, up="z", margin=0.0)
    assert g.resolution == (32, 16, 16)
    assert np.allclose(g.bbox_min, [-1, -0.5, -0.5], atol=1e-6) and np.allclose(g.bbox_max, [1, 0.5, 0.5], atol=1e-6)
    occ = g.alpha > 0.01
    assert occ.all()  # a closed box with no margin: every voxel is inside or on the surface
    surface = np.zeros(g.resolution, bool)
    surface[[0, -1]] = surface[:, [0, -1]] = surface[:, :, [0, -1]] = True
    assert np.allclose(g.rgb[surface].mean(0), [200 / 255, 40 / 255, 20 / 255], atol=0.02)
    # a fully occupied voxel is 5 optical depths thick at this resolution
    assert np.isclose(g.sigma.max() / 32, mesh_mod.OPTICAL_DEPTH)
    assert "interior filled" in g.notes[0]


def test_y_up_meshes_are_turned_z_up(tmp_path):
    m = trimesh.creation.box(extents=(1.0, 3.0, 1.0))  # tall along y
    m.export(tmp_path / "tall.ply")
    g = grid_from_mesh(tmp_path / "tall.ply", resolution=12, up="y", margin=0.0)
    assert g.resolution == (4, 4, 12)  # now tall along z


def test_face_counts_from_headers_and_caps(tmp_path, monkeypatch):
    p = _box(tmp_path, "ply")
    assert count_faces(p) == 12
    assert count_faces(_box(tmp_path, "obj")) == 12
    assert count_faces(_box(tmp_path, "glb")) == 12
    # a PLY header promising 10 million faces and nothing else: refused before trimesh reads it
    (tmp_path / "huge.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
                                        b"property float y\nproperty float z\nelement face 10000000\n"
                                        b"property list uchar int vertex_indices\nend_header\n")
    with pytest.raises(InputError, match="10,000,000 faces, more than the cap"):
        grid_from_mesh(tmp_path / "huge.ply")
    (tmp_path / "junk.glb").write_bytes(b"not gltf at all, sorry" * 4)
    with pytest.raises(InputError, match="glTF"):
        grid_from_mesh(tmp_path / "junk.glb")
    (tmp_path / "points.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                                         "property float z\nend_header\n0 0 0\n")
    with pytest.raises(InputError, match="no triangles"):
        grid_from_mesh(tmp_path / "points.ply")
    with pytest.raises(InputError, match="unsupported mesh extension"):
        grid_from_mesh(tmp_path / "x.fbx") if (tmp_path / "x.fbx").write_text("x") else None
    monkeypatch.setattr(mesh_mod, "MAX_MESH_BYTES", 10)
    with pytest.raises(InputError, match="larger than the cap"):
        grid_from_mesh(p)


def test_shipped_textured_duck_gets_its_texture_colours():
    from maskworks.data import data_path

    g = grid_from_mesh(data_path("nerf", "meshes", "duck_textured.glb"), resolution=32)
    surf = (g.alpha > 0.5)
    mean = g.rgb[surf].mean(0)
    assert mean[0] > 0.6 and mean[1] > 0.5 and mean[2] < 0.3  # a yellow duck
    assert "coloured" in g.notes[0]


@pytest.mark.parametrize("index", [3, -1])
def test_a_face_that_points_past_the_vertices_is_refused(tmp_path, index):
    # corrupt PLY/GLB files (found by a stress run of random byte edits) ended in trimesh's IndexError
    p = tmp_path / "broken.ply"
    p.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                 "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
                 f"3 0 1 {index}\n")
    with pytest.raises(InputError, match=f"broken.ply: a face refers to vertex {index}, but the mesh has 3 vertices"):
        grid_from_mesh(p, resolution=16)


def test_a_glb_whose_json_header_is_broken_is_refused(tmp_path):
    # a flipped bit in a GLB's JSON chunk was json's JSONDecodeError (found by the same stress run)
    from maskworks.data import data_path

    data = bytearray(data_path("nerf", "meshes", "duck_textured.glb").read_bytes())
    start = 20 + bytes(data[20:]).index(b",")  # the first comma of the JSON chunk
    data[start] = ord("}")
    p = tmp_path / "duck.glb"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="duck.glb: its glTF JSON header is not valid"):
        grid_from_mesh(p, resolution=16)
