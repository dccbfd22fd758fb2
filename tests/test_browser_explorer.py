"""The attention explorer in a real browser: JupyterLab on a loopback port, headless Chromium (Debian's
``chromium``, driven by Playwright; no browser is ever downloaded), a small explorer notebook that
imports msa_lib and loads a precomputed explanation bundle, run all cells, check that the explorer
renders and that choosing another sample changes the plot.

CI installs Chromium with ``scripts/setup.sh --test``; without it the test is skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PLOT = ".msa-explorer-plot"
RUN_ALL_JS = """async () => {
  const app = window.jupyterapp;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const work = (async () => {
    let w = app.shell.currentWidget;
    while (!w || !w.context || !w.sessionContext) { await sleep(200); w = app.shell.currentWidget; }
    await w.context.ready;
    await w.sessionContext.ready;
    while (!w.sessionContext.session || !w.sessionContext.session.kernel
           || w.sessionContext.session.kernel.status !== 'idle') { await sleep(200); }
    await app.commands.execute('notebook:run-all-cells');
    return w.content.widgets.length;
  })();
  const limit = new Promise((_, reject) => setTimeout(() => reject(new Error('notebook not run within 120 s')), 120000));
  return Promise.race([work, limit]);
}"""


def chromium_path() -> str | None:
    for candidate in (os.environ.get("MSA_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bundle(path: Path) -> None:
    """A tiny cross-attention model on synthetic data, explained once (a second or two)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from dataset_factory import make_dataset
    from msa_lib.data.torch_data import make_loader
    from msa_lib.explain import attribution as X
    from msa_lib.explain.explorer import build_bundle
    from msa_lib.models import FusionConfig, ModelConfig, build_model

    torch.set_num_threads(1)
    ds = make_dataset(n=6, max_len=6)
    for i in range(len(ds)):
        ds.extra[i] = {"tokens": [f"▁tok{j}" for j in range(len(ds.features["text"][i]))]}
    dims = {m: ds.meta.modalities[m].dim for m in ds.modalities}
    torch.manual_seed(0)
    cfg = ModelConfig(encoder_overrides={"hidden": 16, "layers": 2, "heads": 2}, fusion=FusionConfig(dim=16, heads=2))
    model = build_model("cross_attention", dims, cfg, label_scheme=ds.meta.labels).eval()
    contributions = X.modality_ablation_loader(model, make_loader(ds, None, batch_size=6))
    build_bundle(model, ds, contributions=contributions).save(path)


def write_notebook(path: Path) -> None:
    cells = [
        f"import sys\nsys.path.insert(0, {str(PROJECT_ROOT)!r})",
        "from msa_lib.explain.explorer import ExplanationBundle\n"
        "from msa_lib.explain.widgets import AttentionExplorer\n"
        "explorer = AttentionExplorer(ExplanationBundle.load('bundle.pkl'))\n"
        "explorer.widget",
    ]
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                     "source": src} for src in cells],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab (token-less, loopback only, its own config/runtime/workspace folders) serving tmp_path."""
    pytest.importorskip("jupyterlab")
    root = tmp_path / "root"
    root.mkdir()
    make_bundle(root / "bundle.pkl")
    write_notebook(root / "explorer.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news toast
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "IPYTHONDIR": str(tmp_path / "ipython"),
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
               p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           "--ServerApp.port_retries=0", "--ServerApp.allow_root=True", "--LabApp.expose_app_in_browser=True",
           "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 45
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}): {(tmp_path / 'lab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # our own process group: the server and its kernels
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def test_explorer_renders_and_follows_the_sample_choice(lab, tmp_path):
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium not installed (CI installs it: bash scripts/setup.sh --test)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{lab}/lab/tree/explorer.ipynb", wait_until="domcontentloaded")
            page.wait_for_function("() => !!window.jupyterapp")
            # run all cells once the notebook is loaded and its kernel idle (bounded: evaluate has no timeout)
            count = page.evaluate(RUN_ALL_JS)
            assert count == 2, f"the explorer notebook has {count} cells, expected 2"
            plot = page.locator(f"{PLOT} img, img{PLOT}").first
            plot.wait_for(state="visible", timeout=90_000)
            page.wait_for_function(f"() => {{ const i = document.querySelector('img{PLOT}, {PLOT} img');"
                                   "return i && i.complete && i.naturalWidth > 100; }", timeout=30_000)
            info = page.locator(".msa-explorer-info").first
            assert "s000" in info.inner_text()
            before_src = plot.get_attribute("src")
            before_png = plot.screenshot()
            page.screenshot(path=str(tmp_path / "explorer_before.png"))

            page.locator(".msa-explorer-sample select").first.select_option(index=3)
            page.wait_for_function(
                f"(old) => {{ const i = document.querySelector('img{PLOT}, {PLOT} img');"
                "return i && i.src !== old && i.complete && i.naturalWidth > 100; }", arg=before_src, timeout=30_000)
            page.wait_for_function("() => document.querySelector('.msa-explorer-info').innerText.includes('s003')",
                                   timeout=10_000)
            after_png = plot.screenshot()
            page.screenshot(path=str(tmp_path / "explorer_after.png"))
            assert after_png != before_png, "the plot did not change when another sample was chosen"
            # the pixels differ too, not just the encoding
            from io import BytesIO

            from PIL import Image

            a = np.asarray(Image.open(BytesIO(before_png)).convert("L"), dtype=float)
            b = np.asarray(Image.open(BytesIO(after_png)).convert("L"), dtype=float)
            h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
            assert np.abs(a[:h, :w] - b[:h, :w]).mean() > 0.5
        finally:
            browser.close()
