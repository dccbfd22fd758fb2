"""A quiet `run_all` (issue 19, item 9, the notebook-runner part): the kernels' own chatter goes to a log
file instead of the terminal, and progress bars are drawn only on a terminal."""
from __future__ import annotations

import subprocess
import sys

import nbformat

from msa_lib.app.notebook_runner import execute_notebook
from msa_lib.app.run_all import step_env


def test_kernel_chatter_goes_to_the_log_not_the_terminal(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import os\nprint('n =', n)\nos.write(2, b'native stderr line\\n')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, target, log = tmp_path / "tiny.ipynb", tmp_path / "tiny_out.ipynb", tmp_path / "kernel.log"
    nbformat.write(nb, source)
    execute_notebook(source, target, {"n": 2}, log, cwd=tmp_path)
    terminal = "".join(capfd.readouterr())
    assert "Kernel is running over TCP" not in terminal and "KeyboardInterrupt" not in terminal
    assert "native stderr line" not in terminal and "Executing" not in terminal  # no papermill bar off a terminal
    assert "Kernel is running over TCP without encryption" in log.read_text()  # kept, where it can be read
    outputs = [o for c in nbformat.read(target, as_version=4).cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("n = 2" in o.get("text", "") for o in outputs)  # the cells' own output is in the notebook


def test_progress_bars_only_on_a_terminal():
    bar = "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='work'): pass\n"

    def drawn(env):
        done = subprocess.run([sys.executable, "-c", bar], env=env, capture_output=True, text=True, check=True)
        return "work" in done.stderr

    logged = step_env(on_terminal=False)  # stderr is a log file or a pipe
    assert logged["TQDM_DISABLE"] == "1" and logged["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert not drawn(logged)
    on_terminal = step_env(on_terminal=True)
    on_terminal.pop("TQDM_DISABLE", None)
    assert drawn(on_terminal)
