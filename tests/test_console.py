"""Quiet command lines: TensorFlow's start-up lines hidden unless asked for, log levels from --verbosity."""

import logging
import os
import subprocess
import sys

import pytest

from keras_preresnet import console
from support import REPO



@pytest.mark.parametrize("argv, expected", [
    (["--verbosity=0"], 0), (["--verbosity", "-2"], -2), (["-v", "1"], 1), (["--verbosity=info"], 0),
    (["--verbosity=ERROR"], -2), (["--model=x"], None), (["--verbosity=loud"], None),
])
def test_verbosity_is_read_from_the_command_line_before_parsing(argv, expected):
    assert console.verbosity_in(argv) == expected


@pytest.mark.parametrize("verbosity, environ, level", [
    (None, {}, 2),                              # default: errors only
    (None, {"TF_CPP_MIN_LOG_LEVEL": "0"}, 0),   # the user's setting is kept
    (None, {"TF_CPP_MIN_LOG_LEVEL": "3"}, 3),
    (0, {"TF_CPP_MIN_LOG_LEVEL": "3"}, 0),      # an explicit --verbosity wins
    (-1, {}, 1), (-2, {}, 2), (-3, {}, 3), (1, {}, 0),
])
def test_tensorflow_log_level(verbosity, environ, level):
    assert console.tensorflow_log_level(verbosity, environ) == level


def test_python_log_levels():
    assert console.python_log_level(None) == logging.WARNING
    assert console.python_log_level(0) == logging.INFO and console.python_log_level(-2) == logging.ERROR


def test_bad_verbosity_is_a_clear_error():
    with pytest.raises(ValueError, match="--verbosity must be an integer"):
        console.parse_verbosity("loud")


@pytest.mark.parametrize("argv, orig_argv, expected", [
    (["/usr/bin/keras-preresnet-predict"], ["python", "/usr/bin/keras-preresnet-predict"], True),
    (["-m"], ["python", "-m", "keras_preresnet.predict", "x.jpg"], True),
    (["-m"], ["python", "-m", "keras_preresnet.train", "--config=x"], True),
    (["-m"], ["python", "-m", "keras_preresnet.demo"], False),
    (["pytest"], ["python", "-m", "pytest", "tests"], False),
    (["script.py"], ["python", "script.py"], False),
])
def test_command_lines_are_recognised(argv, orig_argv, expected):
    assert console.running_command_line(argv, orig_argv) is expected


def test_filtered_stderr_drops_start_up_noise_and_passes_the_rest(capfd):
    with console.filtered_stderr():
        os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"a real error\n")
    assert capfd.readouterr().err == "a real error\n"


def _start_up_lines(*arguments):
    """The start-up lines ``python -m keras_preresnet.predict --help`` lets through (TF_CPP_MIN_LOG_LEVEL unset)."""
    environ = {k: v for k, v in os.environ.items() if k != console.LOG_LEVEL_ENV}
    result = subprocess.run([sys.executable, "-m", "keras_preresnet.predict", "--help", *arguments], cwd=REPO,
                            env=environ, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if console.is_noise(line)]


@pytest.mark.slow
def test_command_line_starts_quietly_and_shows_start_up_lines_when_asked():
    asked = _start_up_lines("--verbosity=info")
    if not asked:
        pytest.skip("this TensorFlow build writes no start-up lines to hide")
    assert _start_up_lines() == []
