"""Load and isolation on the real app (``python app.py`` in a subprocess): concurrent gradio_client sessions keep
their own current image, a full queue refuses clearly, an oversized upload is refused clearly.

The same code as ``bench/bench_sessions.py`` (16 sessions x 50 calls, memory, latency per endpoint, long work
next to fast calls), on a smaller scale: 16 sessions x 6 calls of the endpoints that need no precomputation.
"""
from __future__ import annotations

import httpx
import pytest

import app
from bench.bench_sessions import LIGHT_MIX, MODEL, PSI, QUEUE_FULL, Session, flood_queue, run_sessions, serve_app

QUEUE_SIZE = 16                     # more than the 16 sessions ever have pending; the flood sends 3x as many
MAX_UPLOAD = "100kb"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    with serve_app(tmp / "server", ["--queue-size", str(QUEUE_SIZE), "--max-file-size", MAX_UPLOAD]) as srv:
        yield srv, tmp


def test_concurrent_sessions_keep_their_own_image(server):
    srv, tmp = server
    report, _ = run_sessions(srv.url, clients=16, calls=6, mix=LIGHT_MIX, workdir=tmp / "sessions")
    assert report.errors == []
    assert report.leaks == []
    assert len(report.calls) == 16 * 6
    assert len({c.session for c in report.calls}) == 16


def test_the_leak_check_sees_another_sessions_image(server):
    """The isolation check above can fail: a session answered with another one's state is a leak."""
    srv, tmp = server
    a, b = Session(srv.url, 0, tmp / "leak"), Session(srv.url, 1, tmp / "leak")
    a.run("generate")
    b.run("generate")
    b.client = a.client                         # from now on b is answered from a's server session
    b.run("current_image")
    assert a.report.errors == b.report.errors == []
    assert len(b.report.leaks) == 1 and f"seed {a.seed}" in b.report.leaks[0]


def test_a_full_queue_refuses_clearly_and_keeps_serving(server):
    srv, tmp = server
    flood = flood_queue(srv.url, requests=3 * QUEUE_SIZE, workdir=tmp / "flood")
    assert flood.http_refused >= 1 and flood.joined + flood.http_refused == 3 * QUEUE_SIZE
    assert flood.http_detail == f"HTTP 503: Queue is full. Max size is {QUEUE_SIZE} and size is {QUEUE_SIZE}."
    assert flood.refused and all(QUEUE_FULL in message for message in flood.refused)   # gradio_client says so too
    assert flood.failed == []
    assert flood.served_after


def test_an_oversized_upload_is_refused_clearly(server):
    from gradio_client import Client, handle_file

    srv, tmp = server
    limit = app.parse_file_size(MAX_UPLOAD)
    big, small = tmp / "big.safetensors", tmp / "small.safetensors"
    big.write_bytes(b"\0" * (limit + 1))
    small.write_bytes(b"\0" * 1000)
    # the server refuses the upload itself (status 413, the limit in the message) ...
    with open(big, "rb") as f:
        answer = httpx.post(srv.url + "gradio_api/upload", files=[("files", ("big.safetensors", f))], timeout=30)
    assert answer.status_code == 413
    assert answer.text == f"File size exceeded maximum allowed size of {limit} bytes."
    with open(small, "rb") as f:
        assert httpx.post(srv.url + "gradio_api/upload", files=[("files", ("small.safetensors", f))],
                          timeout=30).status_code == 200
    # ... and gradio_client, which reads the limit from the app's config, says so before sending it
    client = Client(srv.url, verbose=False, download_files=str(tmp / "downloads"))
    assert client.config["max_file_size"] == limit
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {limit} bytes"):
        client.predict(MODEL, handle_file(str(big)), api_name="/recipe_open")
    client.predict(MODEL, 3, PSI, 1, api_name="/generate")                 # still serving


def test_file_size_flag():
    assert app.parse_args([]).max_file_size == app.parse_file_size(app.DEFAULT_MAX_FILE_SIZE) == 20 * 2**20
    assert app.parse_args(["--max-file-size", "500kb"]).max_file_size == 500 * 1024
    assert app.parse_args(["--max-file-size", "3 MB"]).max_file_size == 3 * 2**20
    for bad in ("0", "lots", "5pb", "-1mb"):
        with pytest.raises(SystemExit):
            app.parse_args(["--max-file-size", bad])


def test_memory_trim_thread(monkeypatch):
    import platform

    assert app.start_memory_trim(0) is None
    monkeypatch.setenv("INTERP_TRIM_MEMORY_S", "0")
    assert app.start_memory_trim() is None
    monkeypatch.setenv("INTERP_TRIM_MEMORY_S", "soon")
    with pytest.raises(SystemExit, match="INTERP_TRIM_MEMORY_S must be a number of seconds"):
        app.start_memory_trim()
    if platform.libc_ver()[0] == "glibc":
        thread = app.start_memory_trim(0.01)
        assert thread is not None and thread.is_alive()
        thread.stop.set()
        thread.join(5)
        assert not thread.is_alive()
