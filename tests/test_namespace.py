"""One namespace: the command lines run the package's own train and export, whatever the current folder
holds (a user's train.py or export/ must not be picked up instead)."""

import os
import subprocess
import sys

import pytest
from support import subprocess_env

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


@pytest.mark.parametrize("command, arguments, expected", [
    (["-m", "keras_preresnet.train"], ["--list_configs"], "cifar10_preact_resnet164"),
    (["-m", "keras_preresnet.export"], ["--help"], "--formats"),
    (["-m", "keras_preresnet.predict"], ["--help"], "--top_k"),
    (["-m", "keras_preresnet"], ["train", "--list_configs"], "cifar10_preact_resnet164"),
    (["keras-preresnet-train"], ["--list_configs"], "cifar10_preact_resnet164"),
    (["keras-preresnet-export"], ["--help"], "--formats"),
    (["keras-preresnet-predict"], ["--help"], "--top_k"),
    (["keras-preresnet"], ["predict", "--help"], "--top_k"),
])
def test_command_lines_run_ours_beside_a_train_py_and_an_export_folder(crowded, command, arguments, expected):
    """``python -m ...`` and the console scripts (found next to the interpreter: an editable install)."""
    if command[0] == "-m":
        command = [sys.executable, *command]
    else:
        command = [os.path.join(os.path.dirname(sys.executable), command[0])]
        if not os.path.exists(command[0]):
            pytest.skip(f"{os.path.basename(command[0])} is not installed next to {sys.executable} (pip install -e .)")
    result = subprocess.run(command + arguments, cwd=crowded, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert MARKER not in result.stdout + result.stderr
    assert expected in result.stdout, result.stderr[-2000:]
