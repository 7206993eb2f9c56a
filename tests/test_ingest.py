"""`maoocr ingest`: archive safety rules on real zip/tar/folder sources, then whole ingests against the real stack.

Stack tests upload small one-page documents (OCR ~1-3 s each) and keep archives to a handful of files.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devtools import docgen
from devtools.processes import ROOT, ctrl_c_reaches_it
from maoocr.embedded import free_port
from maoocr.ingest import IngestConfig, IngestLimits, Refused, exit_code, ingest, open_source, succeeded_paths
from maoocr.ingest.archive import read_capped, unsafe_name
from maoocr.ingest.cli import main as cli_main
from maoocr.ingest.runner import compact
from maoocr.store.keys import JOB_KEY

MiB = 1024 * 1024
BOMB = b"\0" * (8 * MiB)  # deflates ~1000:1, far over the 100:1 default


# -- building real archives ------------------------------------------------------------------------------------

def make_zip(path: Path, files: list[tuple[str, bytes]], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # how Info-ZIP `zip --symlinks` marks a link
            archive.writestr(info, target)
    return path


def tar_member(name: str, data: bytes = b"", **attrs) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, io.BytesIO(data) if data else None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, io.BytesIO | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for info, data in members:
            archive.addfile(info, data)
    return path


def read_all(source) -> list[tuple[str, bytes | str]]:
    """(name, bytes) per entry, or (name, 'refused: reason')."""
    out: list[tuple[str, bytes | str]] = []
    for entry in source.entries():
        try:
            out.append((entry.name, entry.read()))
        except Refused as exc:
            out.append((entry.name, f"refused: {exc.reason}"))
    return out


def out_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- archive safety (no stack) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,why", [
    ("../evil.png", "traversal"), ("a/../../evil.png", "traversal"), ("a\\..\\..\\evil.png", "traversal"),
    ("/etc/passwd", "absolute"), ("\\\\server\\share\\x.png", "absolute"), ("C:\\x.png", "absolute"),
    ("c:x.png", "absolute"), ("", "empty"), ("a\x00.png", "NUL"),
    ("a/b.png", None), ("./a.png", None), ("..a.png", None), ("a..b/c.png", None),
])
def test_unsafe_names(name, why):
    reason = unsafe_name(name)
    assert (reason is None) if why is None else (why in reason)


def test_zip_refusals_and_good_entries(tmp_path):
    path = make_zip(tmp_path / "docs.bin", [
        ("./a/one.txt", b"first"), ("../evil.png", b"x"), ("/abs.png", b"x"), ("a/", b""), ("bomb.pdf", BOMB),
        ("a/one.txt", b"again"), ("small-zeros.bin", b"\0" * 50_000),  # tiny entries skip the ratio check
    ], symlinks={"link.png": "/etc/passwd"})
    with open_source(path) as source:
        assert source.kind == "zip"
        got = read_all(source)
    assert [name for name, _ in got] == ["a/one.txt", "../evil.png", "/abs.png", "bomb.pdf", "a/one.txt",
                                         "small-zeros.bin", "link.png"]  # './' dropped; folders skipped
    values = [value for _, value in got]
    assert values[0] == b"first" and values[5] == b"\0" * 50_000
    assert "traversal" in values[1] and "absolute" in values[2] and "symlink" in values[6]
    assert "compression ratio" in values[3] and "100:1" in values[3]
    assert "duplicate" in values[4]  # one name, one file: the resume key stays unambiguous


def _patch_central_size(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite one central-directory entry's uncompressed size: a zip that lies about its contents."""
    start = data.index(b"PK\x01\x02")
    while data[start + 46:start + 46 + len(name)] != name:
        start = data.index(b"PK\x01\x02", start + 4)
    return data[:start + 24] + struct.pack("<I", size) + data[start + 28:]


def test_zip_that_lies_about_sizes(tmp_path):
    payload = os.urandom(200_000)
    good = make_zip(tmp_path / "x.zip", [("small.bin", payload), ("huge.bin", payload), ("ok.txt", b"ok")])
    data = _patch_central_size(good.read_bytes(), b"small.bin", 10)
    data = _patch_central_size(data, b"huge.bin", 2**32 - 1)
    lying = tmp_path / "lying.zip"
    lying.write_bytes(data)
    with open_source(lying) as source:
        got = dict(read_all(source))
    # Declared small: reading stops at the declared size and the CRC no longer matches.
    assert got["small.bin"].startswith("refused: unreadable entry") and "CRC" in got["small.bin"]
    assert "limit" in got["huge.bin"]  # declared huge: refused before any byte is inflated
    assert got["ok.txt"] == b"ok"


def test_zip_entry_count_and_total_caps(tmp_path):
    files = [(f"f{i}.txt", b"x" * 1000) for i in range(6)]
    path = make_zip(tmp_path / "many.zip", files)
    with open_source(path, IngestLimits(max_entries=4)) as source:
        entries = list(source.entries())
    assert [e.name for e in entries] == ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]
    assert entries[-1].refusal and "more than 4 entries" in entries[-1].refusal
    with open_source(path, IngestLimits(max_total_bytes=2500)) as source:
        entries = list(source.entries())
    assert [e.refusal is None for e in entries] == [True, True, False]
    assert "more than 2500 bytes" in entries[-1].refusal


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_refusals_in_every_compression(tmp_path, mode):
    path = make_tar(tmp_path / "archive.zip", [  # a misleading suffix: recognised by content
        tar_member("./docs/one.txt", b"first"),
        tar_member("../evil.png", b"x"),
        tar_member("/abs.png", b"x"),
        tar_member("docs", type=tarfile.DIRTYPE),
        tar_member("link.png", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        tar_member("hard.png", type=tarfile.LNKTYPE, linkname="docs/one.txt"),
        tar_member("pipe", type=tarfile.FIFOTYPE),
        tar_member("tty", type=tarfile.CHRTYPE, devmajor=5, devminor=0),
        tar_member("bomb.pdf", BOMB),
        tar_member("last.txt", b"last"),
    ], mode)
    with open_source(path) as source:
        assert source.kind == "tar" and source.total == 9
        got = dict(read_all(source))
    assert got["docs/one.txt"] == b"first" and got["last.txt"] == b"last"
    assert "traversal" in got["../evil.png"] and "absolute" in got["/abs.png"]
    assert "symlink" in got["link.png"] and "hard link" in got["hard.png"]
    assert "fifo" in got["pipe"] and "device" in got["tty"]
    if mode == "w":  # uncompressed: nothing to inflate, only the size cap applies
        assert got["bomb.pdf"] == BOMB
    else:
        assert "compression ratio" in got["bomb.pdf"]


def test_tar_size_cap_and_corrupt_tail(tmp_path):
    big = os.urandom(3000)
    path = make_tar(tmp_path / "t.tgz", [tar_member("a.txt", b"a" * 100), tar_member("big.bin", big),
                                         tar_member("c.txt", b"c" * 100), tar_member("d.txt", os.urandom(20_000))])
    with open_source(path, IngestLimits(max_entry_bytes=2000)) as source:
        got = dict(read_all(source))
    assert got["a.txt"] == b"a" * 100 and got["c.txt"] == b"c" * 100 and "refused" in got["d.txt"]
    assert "3000 bytes; the limit is 2000" in got["big.bin"]
    cut = tmp_path / "cut.tgz"  # the cut lands inside d.txt's (incompressible) data
    cut.write_bytes(path.read_bytes()[:-8000])
    with open_source(cut) as source:
        got = read_all(source)
    assert [value for _, value in got[:3]] == [b"a" * 100, big, b"c" * 100]
    assert got[3][0] == "d.txt" and got[3][1].startswith("refused: unreadable entry: EOFError")
    assert got[4][0] == "cut.tgz:entry-5" and "archive is corrupt" in got[4][1] and len(got) == 5


def test_read_capped_stops_at_the_cap():
    stream = io.BytesIO(b"z" * (20 * MiB))
    with pytest.raises(Refused, match="1000000-byte limit"):
        read_capped(stream, 1_000_000)
    assert stream.tell() == 1_000_001  # counted while reading: never pulled the other 19 MiB
    assert read_capped(io.BytesIO(b"abc"), 3) == b"abc"


def test_directory_tree_links_and_special_files(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "sub" / "b.txt").write_bytes(b"b")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (root / "inside-link.txt").symlink_to(root / "sub" / "b.txt")
    (root / "outside-link.txt").symlink_to(outside)
    (root / "sneaky").symlink_to("../secret.txt")
    (root / "dir-link").symlink_to(tmp_path)
    (root / "dangling").symlink_to(root / "missing")
    os.mkfifo(root / "pipe")
    with open_source(root) as source:
        assert source.kind == "directory"
        got = dict(read_all(source))  # the fifo must be refused, not opened (that would block)
    assert got["a.txt"] == b"a" and got["sub/b.txt"] == b"b" and got["inside-link.txt"] == b"b"
    assert "outside" in got["outside-link.txt"] and "outside" in got["sneaky"]
    assert "outside" in got["dir-link"]
    assert "regular file" in got["pipe"] and "refused" in got["dangling"]
    assert not any(v == b"secret" for v in got.values())


def test_single_file_and_missing_source(tmp_path):
    doc = tmp_path / "scan.png"
    doc.write_bytes(b"\x89PNG fake")
    with open_source(doc) as source:
        assert source.kind == "file" and read_all(source) == [("scan.png", b"\x89PNG fake")]
    assert cli_main([str(tmp_path / "nope"), "--out", str(tmp_path / "o.jsonl"), "--no-progress"]) == 2


def test_compaction_keeps_the_last_line_of_each_path(tmp_path):
    out = tmp_path / "out.jsonl"
    a_lost = {"path": "a.txt", "job_id": "j0", "status": "error", "error": {"code": "interrupted", "message": "x"}}
    a_done = {"path": "a.txt", "job_id": "j1", "status": "succeeded", "result": {"text": "a"}, "attempts": 1}
    b_done = {"path": "b.txt", "job_id": "j2", "status": "succeeded", "result": {"text": "b"}}
    b_lost = {"path": "b.txt", "job_id": "j3", "status": "error", "error": {"code": "timeout", "message": "y"}}
    out.write_text(json.dumps(a_lost) + "\n" + json.dumps(b_done) + "\n"
                   + '{"path": "c.txt", "sta' + "\n"  # a run killed mid-write; the next run's lines follow
                   + json.dumps(a_done) + "\n" + "not json\n" + json.dumps(b_lost) + "\n"
                   + '{"path": "d.txt", "status": "succ')  # and killed mid-write again
    out.chmod(0o640)
    assert succeeded_paths(out) == {"a.txt"}
    compact(out)
    assert out_lines(out) == [a_done, b_lost]  # the last line of each path, where the path first appeared
    assert out.stat().st_mode & 0o777 == 0o640 and os.listdir(tmp_path) == ["out.jsonl"]

    # A run that has nothing to send (a.txt skipped, a refusal) appends, then compacts: no API is needed.
    out.write_text(out.read_text() + json.dumps(a_lost) + "\n" + json.dumps(a_done) + "\n" + '{"path": "a.t')
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    os.mkfifo(root / "pipe")
    summary = ingest(root, out, IngestConfig(api_url="http://127.0.0.1:9", progress=False))
    assert summary["skipped"] == 1 and summary["refused"] == 1 and exit_code(summary) == 0
    assert [(line["path"], line["status"]) for line in out_lines(out)] == [
        ("a.txt", "succeeded"), ("b.txt", "error"), ("pipe", "refused")]


# -- retries against a real (scripted) HTTP server ----------------------------------------------------------------

class _ScriptedAPI(BaseHTTPRequestHandler):
    """POST answers per file name from a script (then 202); GET answers running, then succeeded."""

    scripts: dict[str, list[int]] = {}
    uploads: list[tuple[str, int]] = []
    polls: dict[str, int] = {}

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        name = next(n for n in self.scripts if f'filename="{n}"'.encode() in body)
        self.uploads.append((name, len(body)))
        script = self.scripts[name]
        status = script.pop(0) if script else 202
        if status == 202:
            self._reply(202, {"job_id": f"job-{name}", "status": "queued"})
        else:
            self._reply(status, {"error": {"code": "busy", "message": f"try later ({status})"}},
                        {"Retry-After": "0"} if status == 429 else None)

    def do_GET(self) -> None:
        job_id = self.path.rsplit("/", 1)[-1]
        self.polls[job_id] = self.polls.get(job_id, 0) + 1
        done = self.polls[job_id] >= 2
        self._reply(200, {"id": job_id, "status": "succeeded" if done else "running",
                          "result": {"text": "ok"} if done else None})


@pytest.fixture
def scripted_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _ScriptedAPI
    server.shutdown()
    server.server_close()


def test_transient_errors_are_retried_then_given_up(tmp_path, scripted_api):
    url, api = scripted_api
    api.scripts = {"flaky.png": [503, 429, 502], "down.png": [503] * 10, "bad.png": [413]}
    api.uploads, api.polls = [], {}
    root = tmp_path / "in"
    root.mkdir()
    for name in api.scripts:
        (root / name).write_bytes(name.encode() * 100)
    out = tmp_path / "out.jsonl"
    config = IngestConfig(api_url=url, concurrency=2, max_attempts=4, backoff_s=0.01, poll_interval_s=0.01,
                          progress=False)
    summary = ingest(root, out, config)
    got = {line["path"]: line for line in out_lines(out)}
    assert got["flaky.png"]["status"] == "succeeded" and got["flaky.png"]["attempts"] == 4
    assert got["flaky.png"]["job_id"] == "job-flaky.png" and got["flaky.png"]["result"] == {"text": "ok"}
    assert got["down.png"]["status"] == "error" and got["down.png"]["attempts"] == 4
    assert "503" in got["down.png"]["error"]["message"]
    assert got["bad.png"]["status"] == "rejected" and got["bad.png"]["attempts"] == 1
    assert got["bad.png"]["error"]["http_status"] == 413
    assert sorted(n for n, _ in api.uploads) == ["bad.png"] + ["down.png"] * 4 + ["flaky.png"] * 4
    assert summary["error"] == 1 and exit_code(summary) == 1
    # Resume: every file whose last line is not "succeeded" is sent again; the API has recovered.
    api.scripts, api.uploads = {"flaky.png": [], "down.png": [], "bad.png": [413]}, []
    summary = ingest(root, out, config)
    assert summary["skipped"] == 1 and summary["succeeded"] == 1 and summary["rejected"] == 1
    assert sorted(n for n, _ in api.uploads) == ["bad.png", "down.png"]
    assert exit_code(summary) == 0


def test_unreachable_api_exits_1(tmp_path):
    doc = tmp_path / "scan.png"
    doc.write_bytes(b"data")
    out = tmp_path / "out.jsonl"
    argv = [str(doc), "--out", str(out), "--api", f"http://127.0.0.1:{free_port()}", "--max-attempts", "2",
            "--no-progress"]
    assert cli_main(argv) == 1
    (line,) = out_lines(out)
    assert line["status"] == "error" and line["attempts"] == 2 and "ConnectionError" in line["error"]["message"]


# -- whole ingests against the real stack -------------------------------------------------------------------------

PAGES = docgen.numbered_pages(3, width=900)


def good_files() -> list[tuple[str, bytes]]:
    return [("docs/one.png", docgen.encode(PAGES[0].image, "PNG")), ("docs/two.pdf", docgen.pdf_bytes([PAGES[1]]))]


def bad_files() -> list[tuple[str, bytes]]:
    return [("docs/broken.png", docgen.truncated(docgen.encode(PAGES[2].image, "PNG"))),
            ("../evil.png", b"never read"), ("/etc/abs.png", b"never read"), ("bomb.pdf", BOMB)]


def zip_archive(path: Path) -> Path:
    return make_zip(path / "batch.zip", good_files() + bad_files(), symlinks={"link.png": "/etc/passwd"})


def tar_archive(path: Path) -> Path:
    members = [tar_member(name, data) for name, data in good_files() + bad_files()]
    members.append(tar_member("link.png", type=tarfile.SYMTYPE, linkname="/etc/passwd"))
    return make_tar(path / "batch.tar.gz", members)


@pytest.mark.parametrize("build", [zip_archive, tar_archive], ids=["zip", "tar.gz"])
def test_archive_ingest_end_to_end(stack, tmp_path, build):
    out = tmp_path / "out.jsonl"
    summary = ingest(build(tmp_path), out, IngestConfig(api_url=stack.base_url, form={"strategy": "fast"},
                                                        progress=False))
    lines = out_lines(out)
    got = {line["path"]: line for line in lines}
    assert len(lines) == len(got) == 7
    for line in lines:
        assert {"path", "job_id", "status", "attempts", "seconds"} <= line.keys()
        assert ("result" in line) == (line["status"] == "succeeded") != ("error" in line)
    for path, word in (("docs/one.png", "one"), ("docs/two.pdf", "two")):
        assert got[path]["status"] == "succeeded" and got[path]["job_id"] and got[path]["attempts"] == 1
        assert f"page {word}" in got[path]["result"]["text"] and got[path]["seconds"] > 0
    broken = got["docs/broken.png"]
    assert broken["status"] == "rejected" and broken["job_id"] is None
    assert broken["error"]["http_status"] == 422 and broken["error"]["code"] == "unprocessable_document"
    assert broken["error"]["message"]
    refused = {path: got[path]["error"]["message"] for path in got if got[path]["status"] == "refused"}
    assert set(refused) == {"../evil.png", "/etc/abs.png", "bomb.pdf", "link.png"}
    assert "traversal" in refused["../evil.png"] and "absolute" in refused["/etc/abs.png"]
    assert "compression ratio" in refused["bomb.pdf"] and "symlink" in refused["link.png"]
    assert summary == {"succeeded": 2, "rejected": 1, "refused": 4, "failed": 0, "error": 0, "skipped": 0}
    assert exit_code(summary) == 0


def _job_keys(redis_client) -> set[str]:
    return {k for k in redis_client.scan_iter(JOB_KEY.format("*"), count=1000) if k.count(":") == 2}


def _settled_job_keys(redis_client) -> set[str]:
    """The job keys once no more appear: an upload the killed run had sent is still served by the API after the
    kill, and its job is not one the resumed run made."""
    keys = _job_keys(redis_client)
    while True:
        time.sleep(1.0)
        again = _job_keys(redis_client)
        if again == keys:
            return keys
        keys = again


def test_killed_ingest_resumes_without_resending(stack, redis_client, tmp_path):
    files = [(f"page-{i + 1}.png", docgen.encode(page.image, "PNG")) for i, page in enumerate(PAGES)]
    archive = make_zip(tmp_path / "three.zip", files + [("../evil.png", b"x")])
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "maoocr.ingest.cli", str(archive), "--out", str(out), "--api", stack.base_url,
           "--concurrency", "1", "--strategy", "fast"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not (out.exists() and '"succeeded"' in out.read_text()):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no file succeeded in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    first = out.read_text()
    first_done = {line["path"]: line["job_id"] for line in out_lines(out) if line["status"] == "succeeded"}
    assert 1 <= len(first_done) < 3, first  # killed part-way: something left for the resumed run

    before = _settled_job_keys(redis_client)
    summary = ingest(archive, out, IngestConfig(api_url=stack.base_url, form={"strategy": "fast"}, progress=False))
    new_jobs = _job_keys(redis_client) - before

    assert out.read_text().startswith(first)  # earlier lines kept
    later = out_lines(out)[len(first.splitlines()):]
    assert not {line["path"] for line in later} & set(first_done)  # succeeded files were not sent again
    assert summary["skipped"] == len(first_done) and summary["succeeded"] == 3 - len(first_done)
    assert {line["job_id"] for line in later if line["job_id"]} == {k.rsplit(":", 1)[1] for k in new_jobs}
    assert len(new_jobs) == 3 - len(first_done)
    # Bulk work: queued behind interactive requests (maoocr.priorities).
    assert {redis_client.hget(key, "priority") for key in new_jobs} == {"6"}
    assert succeeded_paths(out) == {name for name, _ in files}
    final = {}
    for line in out_lines(out):
        final[line["path"]] = line
    assert all(final[p]["job_id"] == job for p, job in first_done.items())
    assert final["../evil.png"]["status"] == "refused" and exit_code(summary) == 0
    assert len(out_lines(out)) == len(final) == 4


def test_interrupted_ingest_collects_its_jobs_instead_of_sending_again(stack, redis_client, tmp_path):
    """Ctrl-C while every job is accepted and some still run; the resumed run waits on those jobs, so the server
    OCRs each file once, and the output ends with one line per file."""
    files = [(f"scan-{i + 1}.png", docgen.encode(page.image, "PNG")) for i, page in enumerate(PAGES)]
    archive = make_zip(tmp_path / "scans.zip", files)
    out = tmp_path / "out.jsonl"
    before = _job_keys(redis_client)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "maoocr.ingest.cli", str(archive), "--out", str(out), "--api", stack.base_url,
           "--concurrency", str(len(files)), "--strategy", "fast", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=ctrl_c_reaches_it)
    try:
        deadline = time.monotonic() + 180
        while len(_job_keys(redis_client) - before) < len(files):  # every file has a job on the server
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the jobs were not created in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    first = out_lines(out)
    assert len(first) == len(files)  # the interrupted run compacted too
    interrupted = {line["path"]: line["job_id"] for line in first if line["status"] == "error"}
    assert interrupted, first  # a job takes seconds: the Ctrl-C came while some still ran
    assert all(line["error"]["code"] == "interrupted" and line["job_id"] for line in first
               if line["status"] == "error")

    summary = ingest(archive, out, IngestConfig(api_url=stack.base_url, form={"strategy": "fast"}, progress=False))
    jobs = {key.rsplit(":", 1)[1] for key in _job_keys(redis_client) - before}

    final = out_lines(out)
    assert sorted(line["path"] for line in final) == sorted(name for name, _ in files)  # one line per file
    assert all(line["status"] == "succeeded" for line in final), final
    assert {line["job_id"] for line in final} == jobs and len(jobs) == len(files)  # one OCR job per file
    assert all(next(line for line in final if line["path"] == path)["job_id"] == job
               for path, job in interrupted.items())  # the job the interrupted run started, collected
    assert summary["succeeded"] == len(interrupted) and summary["skipped"] == len(files) - len(interrupted)
    assert exit_code(summary) == 0


def test_a_job_the_server_no_longer_has_is_sent_again(stack, redis_client, tmp_path):
    doc = tmp_path / "scan.png"
    doc.write_bytes(docgen.encode(PAGES[0].image, "PNG"))
    out = tmp_path / "out.jsonl"
    gone = "0" * 32  # never issued: the server answers 404, as for a job whose record expired
    out.write_text(json.dumps({"path": "scan.png", "job_id": gone, "status": "error", "attempts": 1,
                               "error": {"code": "interrupted", "message": "the run was interrupted"}}) + "\n")
    before = _job_keys(redis_client)
    summary = ingest(doc, out, IngestConfig(api_url=stack.base_url, form={"strategy": "fast"}, progress=False))
    (job,) = {key.rsplit(":", 1)[1] for key in _job_keys(redis_client) - before}
    (line,) = out_lines(out)
    assert line["status"] == "succeeded" and line["job_id"] == job != gone and line["attempts"] == 1
    assert summary["succeeded"] == 1 and "page one" in line["result"]["text"]
