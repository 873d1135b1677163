"""Every saved CLI output (tests/golden/cli/*.json) is still what the command prints.

Regenerate after retraining the toy model: ``.venv/bin/python tests/golden/cli_golden.py --record``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
import cli_golden

pytestmark = pytest.mark.integration
GOLDENS = sorted(cli_golden.GOLDEN_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("golden").resolve()
    cli_golden.prepare_inputs(folder)
    return folder


def test_every_command_has_a_golden() -> None:
    assert sorted(p.stem for p in GOLDENS) == sorted(cli_golden.commands(Path("/x")))


@pytest.mark.parametrize("golden", GOLDENS, ids=[p.stem for p in GOLDENS])
def test_cli_output_unchanged(golden: Path, work: Path) -> None:
    saved = json.loads(golden.read_text())
    got = cli_golden.run_command(cli_golden.commands(work)[golden.stem], work)
    diffs = cli_golden.differences(saved["output"], got)
    assert not diffs, f"vlserve {' '.join(saved['args'])}:\n" + "\n".join(diffs[:20])
