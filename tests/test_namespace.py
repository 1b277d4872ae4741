"""One namespace: the command lines run the package's own train and export, whatever the current folder
holds (a user's train.py or export/ must not be picked up instead)."""

import os
import subprocess
import sys

import pytest
from support import REPO

MARKER = "IMPOSTOR RAN"


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """A folder with a train.py and an export/ package of its own, as a user's project may have."""
    folder = tmp_path_factory.mktemp("project")
    impostor = f"import sys\nprint({MARKER!r})\nsys.exit(7)\n"
    (folder / "train.py").write_text(impostor)
    (folder / "export").mkdir()
    (folder / "export" / "__init__.py").write_text(impostor)
    (folder / "export" / "__main__.py").write_text(impostor)
    return folder


def _run(command, folder):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, arguments, expected", [
    ("keras_preresnet.train", ["--list_configs"], "cifar10_preact_resnet164"),
    ("keras_preresnet.export", ["--help"], "--formats"),
    ("keras_preresnet.predict", ["--help"], "--top_k"),
    ("keras_preresnet", ["train", "--list_configs"], "cifar10_preact_resnet164"),
])
def test_modules_run_ours_beside_a_train_py_and_an_export_folder(crowded, module, arguments, expected):
    result = _run([sys.executable, "-m", module, *arguments], crowded)
    assert MARKER not in result.stdout + result.stderr
    assert expected in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("script, arguments, expected", [
    ("keras-preresnet-train", ["--list_configs"], "cifar10_preact_resnet164"),
    ("keras-preresnet-export", ["--help"], "--formats"),
    ("keras-preresnet-predict", ["--help"], "--top_k"),
    ("keras-preresnet", ["predict", "--help"], "--top_k"),
])
def test_console_scripts_run_ours_beside_a_train_py_and_an_export_folder(crowded, script, arguments, expected):
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(path):
        pytest.skip(f"{script} is not installed next to {sys.executable} (pip install -e .)")
    result = _run([path, *arguments], crowded)
    assert MARKER not in result.stdout + result.stderr
    assert expected in result.stdout, result.stderr[-2000:]
