"""The repository stands alone: a clone with nothing beside it runs its unit tests green.

What is tested is the committed tree (a clone), so a test that reads a file from outside the
repository, or a fixture left uncommitted, fails here before it fails for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# The unit tests (no servers): everything but tests/integration, tests/stack and the bench smoke.
UNIT = ["tests", "--ignore=tests/integration", "--ignore=tests/stack", "--ignore=tests/test_bench_smoke.py"]


def test_a_clone_with_nothing_beside_it_passes_its_unit_tests(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    alone = tmp_path / "empty-dir" / "correlator"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(alone)], check=True, timeout=120)
    assert sorted(p.name for p in alone.parent.iterdir()) == ["correlator"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HYPOTHESIS_PROFILE"] = "dev"  # the properties ran at full size in the main run; this is about files
    # `python -m` puts the clone first on sys.path, ahead of the installed checkout.
    where = subprocess.run([sys.executable, "-c", "import correlator, tests.conftest as c; print(correlator.__file__, c.FIXTURES)"],
                           cwd=alone, env=env, capture_output=True, text=True, check=True)
    assert all(path.startswith(str(alone)) for path in where.stdout.split()), where.stdout
    # The whole unit suite again (~5-6 min here, alone; three times that on a slower, busier machine): the bound is
    # only against a hang, so it leaves room for that (1200 s did not).
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *UNIT],
                            cwd=alone, env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
