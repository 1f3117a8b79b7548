"""The Attributes tab answers gradio_client on faces64: train, edit, hold fixed, verify, export / import."""
from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import app_env, pixels, serve_demo
from PIL import Image


@pytest.fixture(scope="module")
def faces_app(tmp_path_factory):
    import app
    from interp.zoo import default_zoo

    if not default_zoo().availability("faces64").available:
        pytest.skip("the built-in faces64 weights are missing")
    tmp = tmp_path_factory.mktemp("attributes")
    mp = app_env(tmp)
    try:
        with serve_demo(app.build_demo(app.build_zoo(), "cpu")) as url:
            yield url, tmp
    finally:
        mp.undo()


def _client(url, tmp):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp / "downloads"))


def _pixels(path) -> np.ndarray:
    return pixels(path).astype(int)


def test_train_edit_hold_fixed_verify_and_export(faces_app):
    from gradio_client import handle_file

    url, tmp = faces_app
    client = _client(url, tmp)
    _, current, _ = client.predict("faces64", 1, 0.7, 1, api_name="/generate")
    status, table, attribute, hold = client.predict("faces64", "Attribute predictor", "", "w", 400, 0.1,
                                                    api_name="/attributes_train")
    assert "boundaries" in status and "400 samples" in status
    names = [row[0] for row in table["data"]]
    assert {"age", "glasses", "smile"} <= set(names)
    assert all(row[1] == "SVM" and 0.0 <= row[2] <= 1.0 for row in table["data"])   # validation accuracies
    accuracy = {row[0]: row[2] for row in table["data"]}
    assert min(accuracy["age"], accuracy["glasses"]) >= 0.9     # global factors separate in W even from 80 samples

    older = _pixels(client.predict("faces64", "age", 3.0, [], api_name="/attributes_render"))
    assert np.abs(older - _pixels(current)).mean() > 1                  # the edit changes the image
    same = _pixels(client.predict("faces64", "age", 0.0, [], api_name="/attributes_render"))
    assert np.array_equal(same, _pixels(current))                       # strength 0: the current image exactly

    shown, summary, strength, preview = client.predict("faces64", "age", 2.0, ["glasses"],
                                                       api_name="/attributes_apply")
    assert "InterFaceGAN 'age (glasses fixed)': +2.00 std in w" in summary and strength == 0
    assert np.array_equal(_pixels(shown), _pixels(preview))

    text, data = client.predict("faces64", "Attribute predictor", "", "age", [], 8, api_name="/attributes_verify")
    assert "eliable" in text and "per unit strength" in text
    rows = data["data"]
    plotted = list(dict.fromkeys(r[0] for r in rows))                  # the target first, then the most moved
    most_moved = re.search(r"most moved otherwise: (\S+)", text).group(1)
    assert plotted[:2] == ["age", most_moved] and len(plotted) == 5 and {r[1] for r in rows} >= {-3, 0, 3}

    heatmap = client.predict("faces64", api_name="/attributes_entanglement")
    assert Image.open(heatmap).width > 200

    exported = client.predict("faces64", api_name="/attributes_export")
    other = _client(url, tmp)
    other.predict("faces64", 1, 0.7, 1, api_name="/generate")
    status2, table2, *_ = other.predict("faces64", handle_file(exported), api_name="/attributes_import")
    assert "imported" in status2 and [r[0] for r in table2["data"]] == names
    again = _pixels(other.predict("faces64", "age", 3.0, [], api_name="/attributes_render"))
    assert np.array_equal(again, older)                                  # the same boundary, the same edit


def test_gradient_directions_edit_and_verify(faces_app):
    """The judge's gradient: one first-order pure W direction per attribute, no classifier; it edits, stacks
    and verifies like a boundary, and moves its own attribute more than any other."""
    url, tmp = faces_app
    client = _client(url, tmp)
    _, current, _ = client.predict("faces64", 3, 0.7, 1, api_name="/generate")
    status, table, attribute, hold = client.predict("faces64", "Attribute predictor", "",
                                                    api_name="/attributes_gradient")
    assert "first-order pure directions" in status and "no accuracies" in status
    rows = {row[0]: row for row in table["data"]}
    assert {"age", "glasses", "smile", "yaw"} <= set(rows) and not any("=" in name for name in rows)
    assert all(row[1] == "gradient" and row[2] is None and row[5] > 0 for row in rows.values())
    older = _pixels(client.predict("faces64", "age", 3.0, [], api_name="/attributes_render"))
    assert np.abs(older - _pixels(current)).mean() > 1
    _, summary, *_ = client.predict("faces64", "age", 2.0, [], api_name="/attributes_apply")
    assert "Judge's gradient 'age': +2.00 std in w" in summary
    text, data = client.predict("faces64", "Attribute predictor", "", "yaw", [], 16, api_name="/attributes_verify")
    change = {}
    for name, strength, value in data["data"]:
        change.setdefault(name, {})[strength] = value
    moved = {name: abs(v[max(v)] - v[min(v)]) for name, v in change.items()}
    assert max(moved, key=moved.get) == "yaw"                            # the SVM boundary's yaw moves glasses most
    with pytest.raises(Exception, match="empty on one side"):               # the judge is checked as for training
        client.predict("faces64", "CLIP prompt pairs", "glasses: a face with glasses | ", api_name="/attributes_gradient")
    status, table, *_ = client.predict("faces64", "CLIP prompt pairs", "glasses: a face with glasses | a face "
                                       "without glasses\nage: an old face | a young face", api_name="/attributes_gradient")
    assert [row[0] for row in table["data"]] == ["glasses", "age"] and "CLIP prompt pairs" in status


def test_bad_input_gets_clear_errors(faces_app):
    url, tmp = faces_app
    client = _client(url, tmp)
    client.predict("faces64", 2, 0.7, 1, api_name="/generate")
    with pytest.raises(Exception, match="no boundaries yet"):
        client.predict("faces64", "age", 1.0, [], api_name="/attributes_apply")
    with pytest.raises(Exception, match="per side"):
        client.predict("faces64", "Attribute predictor", "", "w", 200, 0.02, api_name="/attributes_train")
    with pytest.raises(Exception, match="empty on one side"):
        client.predict("faces64", "CLIP prompt pairs", "glasses: a face with glasses | ", "w", 400, 0.1,
                       api_name="/attributes_train")
    client.predict("faces64", "Attribute predictor", "", "w", 400, 0.1, api_name="/attributes_train")
    with pytest.raises(Exception, match="Choose an attribute"):
        client.predict("faces64", "", 1.0, [], api_name="/attributes_apply")
    with pytest.raises(Exception, match="strength is 0"):
        client.predict("faces64", "age", 0.0, [], api_name="/attributes_apply")
