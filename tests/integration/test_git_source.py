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
            source.cache.files.clear()  # force real object reads through GitPython now and then
    gc.collect()
    assert open_fds() == fds
    assert children() == kids == 0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    assert grown_kib < 10 * 1024, f"max RSS grew by {grown_kib} KiB over 1,000 polls"
