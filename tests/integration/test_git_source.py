"""The Git source on real repositories: mirror, fetch, trees, force pushes, signatures, and no leaks."""

from __future__ import annotations

import gc
import os
import resource
import subprocess
from pathlib import Path

import pytest

from hecate_agent.sources.git import ForcePushRefusedError, GitSource, UnsignedCommitError
from tests.e2e.conftest import Remote, git
from tests.helpers import dump_yaml, route

pytestmark = pytest.mark.integration


def spec(name: str) -> str:
    return dump_yaml(route(name, f"{name}.example.com"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> int:
    me = str(os.getpid())
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += fields[1] == me
    return count


def test_fetch_reads_the_commit_tree_and_caches_blobs(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "git")
    first = remote.commit({"specs/routes/a.yaml": spec("a"), "specs/.github/x.yaml": "junk", "README.md": "#"}, "one")
    remote.push()
    source = GitSource(str(remote.bare), "main", tmp_path / "mirror", path="specs")
    assert source.fetch() == first
    files, problems = source.snapshot(first)
    assert problems == [] and [f.path for f in files] == ["routes/a.yaml"]
    assert files[0].display == "specs/routes/a.yaml"
    second = remote.commit({"specs/routes/b.yaml": spec("b")}, "two")
    remote.push()
    assert source.fetch() == second
    again, _ = source.snapshot(second)
    assert again[0] is files[0]  # the unchanged blob came from the cache
    git(source.mirror, "pack-refs", "--all")  # the tip is read from ref files; packed ones count too
    assert not (source.mirror / source.ref).exists() and source._current_tip() == second


def test_force_push_refused_unless_allowed(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "git")
    first = remote.commit({"specs/a.yaml": spec("a")}, "one")
    remote.push()
    strict = GitSource(str(remote.bare), "main", tmp_path / "m1", path="specs")
    relaxed = GitSource(str(remote.bare), "main", tmp_path / "m2", path="specs", allow_force_push=True)
    assert strict.fetch() == relaxed.fetch() == first
    git(remote.work, "commit", "-q", "--amend", "-m", "rewritten")
    remote.push(force=True)
    with pytest.raises(ForcePushRefusedError) as caught:
        strict.fetch()
    assert "force-pushed" in str(caught.value)
    assert relaxed.fetch() != first


def test_unsigned_or_untrusted_commits_are_refused(tmp_path: Path) -> None:
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"dev@example.com {(tmp_path / 'signing.pub').read_text()}")
    remote = Remote(tmp_path / "git")
    remote.commit({"specs/a.yaml": spec("a")}, "unsigned")
    remote.push()
    source = GitSource(str(remote.bare), "main", tmp_path / "mirror", path="specs", allowed_signers_file=signers)
    with pytest.raises(UnsignedCommitError):
        source.fetch()
    write = remote.work / "specs" / "b.yaml"
    write.write_text(spec("b"))
    git(remote.work, "add", "-A")
    git(remote.work, "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S", "-m", "signed")
    remote.push()
    signed = git(remote.work, "rev-parse", "HEAD")
    assert source.fetch() == signed


@pytest.mark.slow
def test_a_thousand_polls_leave_files_processes_and_memory_flat(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "git")
    tip = remote.commit({f"specs/r{i}.yaml": spec(f"r{i}") for i in range(20)}, "one")
    remote.push()
    source = GitSource(str(remote.bare), "main", tmp_path / "mirror", path="specs")
    for _ in range(50):  # warm up caches and allocator pools
        source.fetch()
        source.snapshot(tip)
    gc.collect()
    fds, kids, rss = open_fds(), children(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(1000):
        source.fetch()
        source.snapshot(tip)
        if i % 250 == 0:
            source.cache.files.clear()  # force real object reads (cat-file) now and then
    gc.collect()
    assert open_fds() <= fds  # a leak grows the count; another thread of the test process may close one
    assert children() == kids == 0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    assert grown_kib < 10 * 1024, f"max RSS grew by {grown_kib} KiB over 1,000 polls"


class _SmartHttp:
    """`git http-backend` behind Basic auth: a Git host that wants a token."""

    def __init__(self, root: Path, token: str) -> None:
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.seen_auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                auth = self.headers.get("Authorization", "")
                outer.seen_auth.append(auth)
                if auth != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                       "QUERY_STRING": query, "REQUEST_METHOD": self.command, "PATH": os.environ["PATH"],
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""), "REMOTE_USER": "agent"}
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(": ")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/remote.git"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_token_from_a_file_is_sent_as_a_header_and_never_leaks(tmp_path: Path) -> None:
    from hecate_agent.sources.git import GitError

    remote = Remote(tmp_path / "git")
    tip = remote.commit({"specs/a.yaml": spec("a")}, "one")
    remote.push()
    token = "ghp_" + "T0ken" * 8
    host = _SmartHttp(tmp_path / "git", token)
    try:
        good = tmp_path / "token"
        good.write_text(token + "\n")
        source = GitSource(host.url, "main", tmp_path / "mirror", path="specs", token_file=good)
        assert source.fetch() == tip
        assert source.snapshot(tip)[0][0].path == "a.yaml"
        wrong = tmp_path / "wrong"
        wrong.write_text("nope\n")
        refused = GitSource(host.url, "main", tmp_path / "mirror2", path="specs", token_file=wrong)
        with pytest.raises(GitError) as caught:
            refused.fetch()
        assert token not in str(caught.value) and "nope" not in str(caught.value)
        config = (tmp_path / "mirror" / "config").read_text()
        assert token not in config and "x-access-token" not in config  # never written to disk
    finally:
        host.close()


def test_ssh_deploy_key_is_used_with_strict_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No SSH server here: a stand-in `ssh` on PATH records how git calls it and runs the remote
    command locally, as sshd would. That shows the key and options the agent passes, end to end."""
    remote = Remote(tmp_path / "git")
    tip = remote.commit({"specs/a.yaml": spec("a")}, "one")
    remote.push()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-calls"
    fake = bin_dir / "ssh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\nfor last; do :; done\nexec sh -c "$last"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    key = tmp_path / "deploy_key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n(test)\n-----END OPENSSH PRIVATE KEY-----\n")
    source = GitSource(f"ssh://git@git.example.test{remote.bare}", "main", tmp_path / "mirror", path="specs",
                       ssh_key_file=key)
    assert source.fetch() == tip
    args = calls.read_text().splitlines()
    for expected in ("-i", str(key), "IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=yes"):
        assert expected in args, (expected, args)
    assert "git@git.example.test" in args
