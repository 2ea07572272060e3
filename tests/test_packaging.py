"""The `kernels/` folder must never be mistaken for the PyPI package `kernels` that transformers probes."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import importlib.util, json
    from transformers.utils.import_utils import is_kernels_available
    import kivi_kernels  # our folder, under its own name
    spec = importlib.util.find_spec("kernels")
    real = None
    if spec is not None and spec.origin is not None:
        import kernels
        real = kernels.__file__
    print(json.dumps({"available": is_kernels_available(), "real": real,
                      "kivi_kernels": list(kivi_kernels.__path__)}))
    """
)


def _probe(extra_path: str | None = None):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_init_in_kernels_folder():
    # A regular package named `kernels` at the repo root would shadow the real one from the cwd.
    assert not (ROOT / "kernels" / "__init__.py").exists()


def test_without_the_real_kernels_package(tmp_path):
    try:
        import importlib.metadata as md

        md.version("kernels")
        pytest.skip("the real `kernels` package is installed here")
    except Exception:
        pass
    result = _probe()
    assert result["available"] is False and result["real"] is None
    assert any(p.endswith("kernels") for p in result["kivi_kernels"])


def test_with_a_real_kernels_package(tmp_path):
    # A stand-in for the PyPI package (version inside transformers' accepted range), placed after the cwd.
    from transformers.utils import import_utils

    pkg = tmp_path / "kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"__version__ = '{import_utils.KERNELS_MIN_VERSION}'\n")
    dist = tmp_path / f"kernels-{import_utils.KERNELS_MIN_VERSION}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: kernels\nVersion: {import_utils.KERNELS_MIN_VERSION}\n")
    result = _probe(str(tmp_path))
    assert result["available"] is True
    assert any(p.endswith("kernels") and str(tmp_path) not in p for p in result["kivi_kernels"])
    assert result["real"] == str(pkg / "__init__.py")
