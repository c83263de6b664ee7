"""The demo's API for scripts: one documented endpoint per job, a file in and the job's JSON out (the same JSON
as the CLI), a bad file answered with {"error": ...}, concurrent anomaly requests scored together."""
from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.browser  # needs the running demo (the session's server fixture)


def test_endpoints_are_named_and_answer_like_the_cli(demo_url, tmp_path):
    from gradio_client import Client, handle_file

    from maskworks.apps.cli import main
    from maskworks.data import data_path

    client = Client(demo_url, verbose=False)
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/predict_image_mae", "/predict_medical_anomaly", "/predict_lidar_detection"} <= named
    assert not any(n.startswith(("/lambda", "/run", "/analyse")) for n in named)  # no auto-named plumbing
    cr = data_path("medical", "dicom", "RG1_UNCI.dcm")
    api = client.predict(handle_file(str(cr)), {}, api_name="/predict_medical_anomaly")
    assert main(["predict", "medical/anomaly", str(cr), "--out", str(tmp_path), "--no-progress"]) == 0
    cli = json.loads((tmp_path / "RG1_UNCI.json").read_text())
    assert {k: v for k, v in cli.items() if k not in ("input", "outputs")} == api
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert client.predict(handle_file(str(bad)), {}, api_name="/predict_medical_anomaly")["error"].startswith("notes.txt:")
    assert "unknown options" in client.predict(handle_file(str(cr)), {"nope": 1}, api_name="/predict_image_mae")["error"]
    with urllib.request.urlopen(demo_url.rstrip("/") + "/healthz", timeout=10) as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and "/predict_medical_anomaly" in health["apis"]


def test_concurrent_anomaly_requests_get_their_own_answers(demo_url):
    from gradio_client import Client, handle_file

    from maskworks.data import data_path

    files = sorted(data_path("examples", "anomaly").glob("*.png"))

    def one(f):
        return Client(demo_url, verbose=False).predict(handle_file(str(f)), {}, api_name="/predict_medical_anomaly")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, files * 2))
    for f, a in zip(files * 2, answers):
        assert a["file"] == f.name and a["in_distribution"] is True
    # a batch scores each image as alone (up to float noise): the same file, the same z
    by_file = {}
    for a in answers:
        by_file.setdefault(a["file"], []).append(a["z_score"])
    assert all(abs(z[0] - z[1]) < 1e-3 for z in by_file.values())


def test_bench_serve_has_a_shipped_example_for_every_endpoint():
    """``maskworks bench serve`` drives every /predict_* endpoint: each needs an input that exists."""
    from maskworks.apps.entries import collect
    from maskworks.apps.serve_bench import EXAMPLES
    from maskworks.data import data_path

    apis = set(collect("APIS"))
    assert apis == set(EXAMPLES), f"endpoints without a bench example: {sorted(apis - set(EXAMPLES))}"
    assert all(data_path(*p).is_file() for p in EXAMPLES.values())


def _holds_path_key(obj) -> bool:
    if isinstance(obj, dict):
        return "path" in obj or any(_holds_path_key(v) for v in obj.values())
    return isinstance(obj, list) and any(_holds_path_key(v) for v in obj)


def test_every_endpoint_answers_a_script_with_its_shipped_example(demo_url):
    """Each /predict_* endpoint, called by gradio_client with bench serve's example, answers a result, not an
    error: a report holding a dict with a "path" key made gradio_client fetch it as a file (403 Forbidden) for
    the audio-visual and video endpoints until their media info said "file"."""
    from gradio_client import Client, handle_file

    from maskworks.apps.serve_bench import EXAMPLES
    from maskworks.data import data_path

    client = Client(demo_url, verbose=False)
    fast = {"nerf_reconstruct": {"resolution": 32}}
    for name, parts in EXAMPLES.items():
        answer = client.predict(handle_file(str(data_path(*parts))), fast.get(name, {}), api_name=f"/predict_{name}")
        assert "error" not in answer, (name, answer)
        assert not _holds_path_key(answer), name
