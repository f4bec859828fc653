"""`.pre-commit-hooks.yaml`: `pre-commit try-repo` of this repository runs the hook on a config repository.

pre-commit pip-installs this repository (HEAD plus uncommitted changes to tracked files) into a fresh
virtualenv, so this needs PyPI; PRE_COMMIT_HOME is a temporary folder, so nothing is reused between runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, SAMPLE_REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
                "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}


def config_repo(path: Path) -> Path:
    shutil.copytree(SAMPLE_REPO, path)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    return path


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.mark.timeout(1200)
def test_try_repo_passes_on_the_sample_repo_and_fails_on_a_broken_copy(tmp_path: Path) -> None:
    env = {**os.environ, **GIT_IDENTITY, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "NO_COLOR": "1"}
    env.pop("VIRTUAL_ENV", None)

    def try_repo(repo: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "hecate-validate", "--all-files", "--verbose",
             "--color", "never"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=1100, check=False,
        )

    good = try_repo(config_repo(tmp_path / "good"))
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert "hecate-agent validate" in good.stdout and "Passed" in good.stdout
    assert ".: valid (5 Route, 2 AuthPolicy, 3 Stream, config.yaml)" in good.stdout

    broken = config_repo(tmp_path / "broken")
    replace(broken / "routes/shop.yaml", "percentage: 10", "percentage: 150")
    replace(broken / "routes/grafana.yaml", "domain: grafana.example.com", "domain: api.example.com")
    subprocess.run(["git", "-C", str(broken), "add", "-A"], check=True)
    bad = try_repo(broken)
    assert bad.returncode == 1, bad.stdout[-3000:] + bad.stderr[-3000:]
    assert "Failed" in bad.stdout
    assert ("routes/grafana.yaml:9:11: Route/grafana: spec.domain: domain 'api.example.com' is already served by "
            "Route/api (routes/api.yaml:9:11)") in bad.stdout
    assert "routes/shop.yaml:17:17: Route/shop: spec.canary.percentage: int 150 is out of range" in bad.stdout
