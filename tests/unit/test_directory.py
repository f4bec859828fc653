"""Reading a spec directory: what is skipped and what is refused before parsing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hecate_agent.sources.directory import read_directory
from tests.helpers import dump_yaml, route, write_repo


def test_reads_yaml_files_and_skips_hidden_ones(tmp_path: Path) -> None:
    write_repo(tmp_path, {
        "routes/a.yaml": dump_yaml(route()),
        "routes/b.yml": dump_yaml(route(name="b", domain="b.example.com")),
        "README.md": "# not a spec",
        ".github/workflows/ci.yaml": "on: push",
        "routes/.a.yaml.swp": "junk",
        ".hidden.yaml": "junk",
    })
    files, problems = read_directory(tmp_path)
    assert problems == []
    assert sorted(f.path for f in files) == ["routes/a.yaml", "routes/b.yml"]
    assert all(f.display.startswith(str(tmp_path)) for f in files)


def test_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"routes/a.yaml": dump_yaml(route())})
    os.symlink("/etc/passwd", repo / "routes" / "passwd.yaml")
    os.symlink("/etc", repo / "etc-link")
    os.symlink("routes/a.yaml", repo / "alias.yaml")  # inside the repo: allowed
    os.symlink(repo / "routes" / "a.yaml", repo / "absolute.yaml")  # absolute: inside on this machine only
    files, problems = read_directory(repo)
    messages = {p.file.rsplit("/", 1)[-1]: p.message for p in problems}
    assert "symlink leads outside the spec repository (to /etc/passwd)" in messages["passwd.yaml"]
    assert "leads outside" in messages["etc-link"]
    assert "leads outside" in messages["absolute.yaml"]
    assert sorted(f.path for f in files) == ["alias.yaml", "routes/a.yaml"]


def test_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper
    started = time.perf_counter()
    files, problems = read_directory(tmp_path)
    assert time.perf_counter() - started < 1.0
    assert files == []
    assert [p.message for p in problems] == [
        "file is 52,428,800 bytes, over the 1,048,576-byte limit for one spec file; split it into several files"
    ]


def test_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    files, problems = read_directory(tmp_path)
    assert files == [] and "not a regular file" in problems[0].message


def test_single_file(tmp_path: Path) -> None:
    write_repo(tmp_path, {"one.yaml": dump_yaml(route())})
    files, problems = read_directory(tmp_path / "one.yaml")
    assert problems == [] and [f.path for f in files] == ["one.yaml"]
