"""Downloads from a real HTTP server on 127.0.0.1 serving the shared files: verified, resumable, used by a job."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from llm_adapters.data.checksums import MANIFEST
from llm_adapters.data.download import fetch, locate
from llm_adapters.data.sets import DataError
from llm_adapters.files import sha256
from llm_adapters.job.recipe import run
from tests.helpers.configs import FAST, ROOT, make_config

GSM8K = "dataset/gsm8k/test.json"


class RangeHandler(SimpleHTTPRequestHandler):
    """A static file server that also answers ``Range: bytes=N-`` (the standard library's does not)."""

    ranges: ClassVar[list[str]] = []  # Range headers received, for the resume test

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().do_GET()
        self.ranges.append(header)
        start = int(re.fullmatch(r"bytes=(\d+)-", header).group(1))
        data = path.read_bytes()
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


class HubHandler(SimpleHTTPRequestHandler):
    """Just enough of the Hugging Face hub's file API for hf_hub_download: HEAD and GET on
    /datasets/<owner>/<name>/resolve/<revision>/<path>, with the commit and ETag headers it reads."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: bool) -> None:
        match = re.fullmatch(r"/datasets/[^/]+/[^/]+/resolve/[^/]+/(.+)", self.path.split("?")[0])
        path = Path(self.directory) / match.group(1) if match else None
        if path is None or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)


def serve(handler: type, root: Path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def server(tmp_path, shared_data):
    """Serves a copy of the shared data directory (so a test may tamper with it)."""
    root = tmp_path / "served"
    shutil.copytree(shared_data, root)
    RangeHandler.ranges = []
    httpd, url = serve(RangeHandler, root)
    yield url, root
    httpd.shutdown()
    httpd.server_close()


def test_download_is_verified_and_cached(server, tmp_path, shared_data):
    url, _ = server
    path = locate(GSM8K, None, url, None, str(tmp_path / "cache"))
    assert path == tmp_path / "cache" / GSM8K
    assert path.read_bytes() == (shared_data / GSM8K).read_bytes()
    assert not list(path.parent.glob("*.part"))
    assert locate(GSM8K, None, None, None, str(tmp_path / "cache")) == path  # cached: no URL needed any more


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path, shared_data):
    url, _ = server
    data = (shared_data / GSM8K).read_bytes()
    dest = tmp_path / "cache" / GSM8K
    dest.parent.mkdir(parents=True)
    (dest.parent / "test.json.part").write_bytes(data[:100_000])
    fetch(f"{url}/{GSM8K}", dest, MANIFEST[GSM8K])
    assert RangeHandler.ranges == ["bytes=100000-"]
    assert sha256(dest) == MANIFEST[GSM8K][1]


def test_tampered_file_is_rejected_and_not_kept(server, tmp_path):
    url, root = server
    data = bytearray((root / GSM8K).read_bytes())
    data[5000] = ord("#") if data[5000] != ord("#") else ord("@")  # one byte changed, the size kept
    (root / GSM8K).write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"test.json: got \d+ bytes with sha256 [0-9a-f]{64}, expected"):
        locate(GSM8K, None, url, None, str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / GSM8K).exists()
    assert not (tmp_path / "cache" / (GSM8K + ".part")).exists()


def test_unknown_file_gets_its_digest_recorded(server, tmp_path):
    url, root = server
    relative = "dataset/custom/test.json"
    (root / "dataset" / "custom").mkdir()
    (root / relative).write_text(json.dumps([{"instruction": "q", "input": "", "output": "", "answer": "1"}]))
    path = locate(relative, None, url, None, str(tmp_path / "cache"))
    record = path.with_name("test.json.sha256").read_text().split()
    assert record == [str(path.stat().st_size), sha256(path)]
    path.write_text("[]")  # a later corruption of the cache is caught
    with pytest.raises(DataError, match="expected"):
        locate(relative, None, None, None, str(tmp_path / "cache"))


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"http://127.0.0.1:9/dataset/gsm8k/test.json: download failed"):
        locate(GSM8K, None, "http://127.0.0.1:9", None, str(tmp_path / "cache"))


def test_job_downloads_what_data_dir_lacks(server, tmp_path):
    url, _ = server
    cfg = make_config(
        *FAST,
        "paths.data_dir=null",
        f"paths.data_url={url}",
        f"paths.data_cache={tmp_path / 'cache'}",
        "eval.datasets=[gsm8k,boolq]",
        "eval.max_samples=2",
    )
    results = run(cfg, tmp_path / "job")
    assert results["status"] == "ok" and results["eval"]["gsm8k"]["n"] == 2
    assert (tmp_path / "cache" / "dataset" / "boolq" / "test.json").is_file()


def test_hub_dataset_source(shared_data, tmp_path):
    """data_hub names a hub dataset repository with the same layout; hf_hub_download fetches it from the endpoint
    in HF_ENDPOINT (a fake hub on 127.0.0.1 here), in a subprocess since huggingface_hub reads it at import."""
    httpd, url = serve(HubHandler, shared_data)
    script = (
        "import sys; from llm_adapters.data.download import locate; from llm_adapters.data.sets import DataError\n"
        f"print(locate({GSM8K!r}, None, 'http://127.0.0.1:9', 'someone/llm-adapters', {str(tmp_path / 'cache')!r}))\n"
        "try:\n"
        f"    locate('dataset/nope/test.json', None, None, 'someone/llm-adapters', {str(tmp_path / 'cache')!r})\n"
        "except DataError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert done.returncode == 0, done.stderr[-2000:]
    path, message = done.stdout.strip().splitlines()
    assert path.startswith(str(tmp_path / "cache" / "hub"))
    assert Path(path).read_bytes() == (shared_data / GSM8K).read_bytes()
    assert message.startswith("dataset/nope/test.json: not found in hub dataset someone/llm-adapters")


def test_a_file_missing_from_data_dir_says_where_it_looked(tmp_path):
    """The message names the directory searched, the cache, and the download that failed after it."""
    from llm_adapters.data.download import locate

    (tmp_path / "data").mkdir()
    with pytest.raises(
        DataError,
        match=r"dataset/gsm8k/test.json: not in paths.data_dir .*data, not in the cache; .*"
        r"127.0.0.1:9/dataset/gsm8k/test.json: download failed",
    ):
        locate("dataset/gsm8k/test.json", str(tmp_path / "data"), "http://127.0.0.1:9", None, str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"not in paths.data_dir .*, not in the cache .*, and no data_url"):
        locate("dataset/gsm8k/test.json", str(tmp_path / "data"), None, None, str(tmp_path / "c"))
