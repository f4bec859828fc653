"""Symlinks in a spec repository: one rule (sources/links.py) for the directory and the Git reader alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hecate_agent.sources.directory import read_directory
from hecate_agent.sources.git import read_tree
from hecate_agent.sources.links import Entry, follow
from tests.helpers import dump_yaml, route, write_repo

# link (relative to specs/) -> target, and what both readers must make of it: the file it is read as,
# or the start of the problem it is refused with.
LINKS = {
    "alias.yaml": ("routes/a.yaml", "read routes/a.yaml"),
    "routes/up.yaml": ("../routes/./a.yaml", "read routes/a.yaml"),
    "chain.yaml": ("alias.yaml", "read routes/a.yaml"),
    "configmap.yaml": ("..data/app.yaml", "read .2024/app.yaml"),  # a Kubernetes ConfigMap volume
    "via-folder.yaml": ("linked-routes/a.yaml", "read routes/a.yaml"),
    "dotdot-through-link.yaml": ("linked-routes/../routes/a.yaml", "read routes/a.yaml"),
    "absolute.yaml": ("/etc/passwd", "symlink leads outside the spec repository (to /etc/passwd)"),
    "absolute-inside.yaml": ("@SPECS@/routes/a.yaml", "symlink leads outside the spec repository"),
    "escape.yaml": ("../outside.yaml", "symlink leads outside the spec repository (to ../outside.yaml)"),
    "escape-folder": ("../..", "symlink leads outside the spec repository"),
    "escape-via-folder.yaml": ("linked-routes/../../outside.yaml", "symlink leads outside the spec repository"),
    "loop-a.yaml": ("loop-b.yaml", "symlink loop"),
    "loop-b.yaml": ("loop-a.yaml", "symlink loop"),
    "self.yaml": ("self.yaml", "symlink loop"),
    "dangling.yaml": ("nowhere.yaml", "symlink points to nowhere.yaml, which does not exist"),
    "to-folder.yaml": ("routes", "symlink to something that is not a regular file"),
    "through-file.yaml": ("routes/a.yaml/x.yaml", "symlink points to routes/a.yaml, which does not exist"),
    "linked-routes": ("routes", "skipped"),
    "notes.txt": ("nowhere", "skipped"),
}


def build(work: Path) -> Path:
    specs = work / "specs"
    write_repo(work, {"specs/routes/a.yaml": dump_yaml(route()), "specs/.2024/app.yaml": dump_yaml(route("cm")),
                      "outside.yaml": dump_yaml(route("out"))})
    os.symlink(".2024", specs / "..data")
    for link, (target, _) in LINKS.items():
        os.symlink(target.replace("@SPECS@", str(specs)), specs / link)
    return specs


def verdicts(files: list, problems: list) -> dict[str, str]:
    found = {p.file.split("specs/", 1)[1]: p.message for p in problems}
    names = {"app": "routes/a.yaml", "cm": ".2024/app.yaml"}
    for f in files:
        if f.path != "routes/a.yaml":
            found[f.path] = "read " + names[next(line for line in f.data.decode().splitlines()
                                                if line.strip().startswith("name:")).split()[-1]]
    return found


def expected() -> dict[str, str]:
    return {link: outcome for link, (_, outcome) in LINKS.items() if outcome != "skipped"}


def check(found: dict[str, str]) -> None:
    assert set(found) == set(expected())
    for link, outcome in expected().items():
        assert found[link].startswith(outcome), (link, found[link])


def test_the_directory_reader_follows_the_rule(tmp_path: Path) -> None:
    check(verdicts(*read_directory(build(tmp_path / "work"))))


def test_the_git_reader_follows_the_same_rule(tmp_path: Path) -> None:
    work = tmp_path / "work"
    build(work)
    git = ["git", "-C", str(work), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "links"], check=True)
    check(verdicts(*read_tree(work, "HEAD", "specs")))


def test_a_long_chain_is_followed_up_to_the_kernel_limit() -> None:
    def chain(length: int):
        def lookup(path: str) -> Entry:
            if path == "end.yaml":
                return Entry("file")
            number = int(path.removesuffix(".yaml").removeprefix("l"))
            return Entry("link", f"l{number + 1}.yaml" if number + 1 < length else "end.yaml")
        return lookup

    assert follow("l0.yaml", chain(40)).kind == "file"
    assert follow("l0.yaml", chain(41)).problem.startswith("symlink loop")


@pytest.mark.parametrize("mode", [0o000, 0o600])
def test_an_unreadable_folder_is_a_problem_not_a_traceback(tmp_path: Path, mode: int) -> None:
    """Tests run as root, which reads anything: the CLI runs without the capabilities that let it."""
    specs = write_repo(tmp_path / "specs", {"routes/a.yaml": dump_yaml(route()), "locked/b.yaml": dump_yaml(route())})
    os.symlink("../locked/b.yaml", specs / "routes" / "b.yaml")
    (specs / "locked").chmod(mode)
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all",
             sys.executable, "-m", "hecate_agent", "validate", str(specs)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        (specs / "locked").chmod(0o755)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    if mode == 0o000:
        assert f"{specs}/locked: cannot read folder: Permission denied" in lines
    else:  # listable but not searchable: its files cannot be opened
        assert f"{specs}/locked/b.yaml: cannot read file: Permission denied" in lines
    assert f"{specs}/routes/b.yaml: cannot follow the symlink: locked/b.yaml: Permission denied" in lines
    assert len(lines) == 3, lines


def test_paths_beyond_path_max_are_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = write_repo(tmp_path / "specs", {"routes/a.yaml": dump_yaml(route())})
    monkeypatch.chdir(specs)
    segment = "d" * 250
    depth = 0
    while len(str(specs)) + depth * (len(segment) + 1) < 4200:  # bounded: about 17 levels
        os.mkdir(segment)
        os.chdir(segment)
        depth += 1
    with open("deep.yaml", "w") as handle:
        handle.write(dump_yaml(route("deep", "deep.example.com")))
    monkeypatch.chdir(tmp_path)
    files, problems = read_directory(specs)
    assert [f.path for f in files] == ["routes/a.yaml"]
    assert len(problems) == 1 and problems[0].message in (
        "cannot read folder: File name too long", "cannot read file: File name too long"
    ), problems


def test_an_unreadable_root_is_named_as_typed(tmp_path: Path) -> None:
    specs = write_repo(tmp_path / "specs", {"routes/a.yaml": dump_yaml(route())})
    specs.chmod(0o000)
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all",
             sys.executable, "-m", "hecate_agent", "validate", "specs"],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        )
    finally:
        specs.chmod(0o755)
    assert "Traceback" not in result.stderr, result.stderr
    assert "'specs' is not readable" in result.stderr, result.stderr  # the command line refuses it before reading
