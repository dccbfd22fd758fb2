"""The layout rules of ARCHITECTURE.md, checked rather than hoped for."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "msa_lib"


def test_imports_run_down_the_pipeline():
    """import-linter's layers contract (pyproject.toml): no import back up and no import loop between stages."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: run `bash scripts/setup.sh` (import-linter is in requirements.txt)")
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _calls(attr: str) -> list[str]:
    found = []
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr:
                target = ast.unparse(node.func.value)
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}:{target}")
    return found


def test_exactly_one_training_loop():
    """One place clips gradients and steps an optimiser: msa_lib.train.trainer.training_step."""
    clips = _calls("clip_grad_norm_")
    optimiser_steps = [c for c in _calls("step") if not c.endswith(":scheduler")]
    assert len(clips) == 1 and clips[0].startswith("msa_lib/train/trainer.py"), clips
    assert len(optimiser_steps) == 1 and optimiser_steps[0].startswith("msa_lib/train/trainer.py"), optimiser_steps


def test_no_study_code_below_studies():
    """Stage packages never import a study (the contract says so too; this names the offender plainly)."""
    offenders = []
    for path in LIB.rglob("*.py"):
        rel = path.relative_to(LIB).parts
        if rel[0] in ("studies", "app"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("msa_lib.studies", "msa_lib.app")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
    assert not offenders, offenders


def test_no_unused_imports_or_undefined_names():
    """pyflakes over the library, tests, benchmarks, scripts and the notebook sources (where Jupyter's
    ``display`` is a builtin). A line marked ``# noqa`` (a deliberate re-export, an import that registers
    extractors) is exempt."""
    try:
        from pyflakes.api import checkPath
    except ImportError:
        pytest.fail("pyflakes is missing: run `bash scripts/setup.sh` (pyflakes is in requirements.txt)")

    class Collect:
        def __init__(self):
            self.found: list[str] = []

        def unexpectedError(self, filename, message):
            self.found.append(f"{filename}: {message}")

        def syntaxError(self, filename, message, lineno, offset, text):
            self.found.append(f"{filename}:{lineno}: {message}")

        def flake(self, message):
            if Path(message.filename).parent == ROOT / "notebooks" / "src" and message.message_args == ("display",):
                return  # IPython puts display() in every notebook's namespace
            line = Path(message.filename).read_text().splitlines()[message.lineno - 1]
            if "noqa" not in line:
                self.found.append(str(message))

    report = Collect()
    for folder in ("msa_lib", "tests", "benchmarks", "scripts", "notebooks/src"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            checkPath(str(path), report)
    assert not report.found, "\n".join(report.found)
