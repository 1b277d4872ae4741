"""Quiet command lines: TensorFlow's start-up lines stay off the terminal unless asked for.

TensorFlow 2.21 writes lines such as ``oneDNN custom operations are on ...`` and ``WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR`` from C++ while it loads, before
``TF_CPP_MIN_LOG_LEVEL`` takes effect. The package's command lines (the modules of ``COMMANDS`` run with
``python -m``, and the console scripts) load TensorFlow with file descriptor 2 sent to a temporary file
and pass on every line that is not known start-up noise.

The level: ``--verbosity`` on the command line (absl's scale: ``-3`` fatal ... ``0`` info, ``1`` debug,
or those names) if given; else ``$TF_CPP_MIN_LOG_LEVEL`` if set; else errors only (level 2). Start-up
lines are shown at TensorFlow log level 0 (``--verbosity=info`` or ``TF_CPP_MIN_LOG_LEVEL=0``).

Importing this module imports nothing heavy: it runs before Keras and TensorFlow are loaded.
"""

import contextlib
import logging
import os
import sys
import tempfile

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# The package's command lines: the subcommands of ``keras-preresnet`` and the module each one runs
# (``python -m MODULE``). The per-tool console scripts are ``keras-preresnet-<subcommand>``.
COMMANDS = {
    "train": "keras_preresnet.train",
    "export": "keras_preresnet.export",
    "predict": "keras_preresnet.predict",
    "convert": "keras_preresnet.convert",
    "table": "keras_preresnet.train.table",
    "evaluate": "keras_preresnet.train.evaluate",
    "plot_layer_responses": "keras_preresnet.plot_layer_responses",
}
SCRIPT = "keras-preresnet"
COMMAND_MODULES = ("keras_preresnet", *COMMANDS.values())
COMMAND_SCRIPTS = (SCRIPT, *(f"{SCRIPT}-{name}" for name in ("predict", "train", "export")))
# Lines TensorFlow and its libraries write while loading; nothing a user of the command lines acts on.
STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning",
    "Could not find cuda drivers",
    "failed call to cuInit",
)
VERBOSITY_NAMES = {"debug": 1, "info": 0, "warning": -1, "warn": -1, "error": -2, "fatal": -3}


def parse_verbosity(value):
    """absl's ``--verbosity`` value (an integer or a level name) -> the integer."""
    text = str(value).strip().lower()
    if text in VERBOSITY_NAMES:
        return VERBOSITY_NAMES[text]
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"--verbosity must be an integer (-3 fatal ... 0 info, 1 debug) or one of "
            f"{', '.join(VERBOSITY_NAMES)}; received {value!r}."
        ) from None


def verbosity_in(argv):
    """The ``--verbosity`` / ``-v`` value in ``argv`` (absl's and argparse's spellings), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg in ("--verbosity", "-v") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--verbosity="):
            value = arg.split("=", 1)[1]
    if value is None:
        return None
    try:
        return parse_verbosity(value)
    except ValueError:
        return None  # the argument parser reports it


def tensorflow_log_level(verbosity, environ=os.environ):
    """The ``TF_CPP_MIN_LOG_LEVEL`` a run uses: from ``verbosity``, else the environment's, else 2."""
    if verbosity is not None:
        return 0 if verbosity >= 0 else min(-verbosity, 3)
    try:
        return int(environ[LOG_LEVEL_ENV])
    except (KeyError, ValueError):
        return 2


def python_log_level(verbosity):
    """The Python ``logging`` level for TensorFlow's and absl's Python loggers."""
    if verbosity is None:
        return logging.WARNING
    return {1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING, -2: logging.ERROR}.get(
        max(min(verbosity, 1), -3), logging.FATAL)


def is_noise(line):
    return any(marker in line for marker in STARTUP_NOISE)


@contextlib.contextmanager
def filtered_stderr():
    """Sends file descriptor 2 to a temporary file; afterwards re-emits all but the start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                    if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def running_command_line(argv=None, orig_argv=None):
    """Whether this process is one of the package's command lines."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) in COMMAND_SCRIPTS:
        return True
    for i, arg in enumerate(orig_argv[:-1]):
        if arg == "-m":
            return orig_argv[i + 1] in COMMAND_MODULES
    return False


def load_tensorflow_quietly(argv=None):
    """Sets the log levels from ``--verbosity`` / the environment, then loads Keras (and TensorFlow,
    where installed) with the start-up lines filtered out below log level 0. Call before anything
    imports Keras; later calls do nothing."""
    argv = sys.argv if argv is None else argv
    verbosity = verbosity_in(argv[1:])
    level = tensorflow_log_level(verbosity)
    os.environ[LOG_LEVEL_ENV] = str(level)
    quiet = level > 0 and "tensorflow" not in sys.modules
    with filtered_stderr() if quiet else contextlib.nullcontext():
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass
        import keras  # noqa: F401
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(python_log_level(verbosity))
