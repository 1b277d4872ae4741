"""The command lines' shared ending (keras_preresnet/cli.py) and the keras-preresnet dispatcher."""

import errno

import pytest
from absl import flags

from keras_preresnet import __main__ as dispatcher
from keras_preresnet import cli, console


class DiskFull(OSError):
    """An OSError subclass whose message is the whole sentence, as the file writers raise."""

    def __str__(self):
        return "Could not write model.weights.h5: the disk is full; free space and run again."


def _raising(error):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize("error, message", [
    (ValueError("`depth` must be 110; received 7."), "`depth` must be 110; received 7."),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.t7"), "No such file or directory: 'x.t7'"),
    (PermissionError(errno.EACCES, "Permission denied", "/models"), "Permission denied: '/models'"),
    (DiskFull(), "Could not write model.weights.h5: the disk is full; free space and run again."),
    (cli.CommandError("the loss is NaN"), "the loss is NaN"),
])
def test_failures_end_in_one_line_and_exit_1(error, message, capsys):
    assert cli.ending("train", _raising(error))(["train"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert err == f"train: error: {message}\n"


def test_usage_errors_exit_2_and_interruptions_130(capsys):
    assert cli.ending("export", _raising(cli.usage_error("--out is required.")))(["export"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == "export: error: --out is required.\n"
    ending = cli.ending("train", _raising(KeyboardInterrupt()), interrupted="start it again to resume.")
    assert ending(["train"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "train: interrupted; start it again to resume.\n"


def test_extra_failures_are_reported_and_bugs_are_not_hidden(capsys):
    class TrainingError(RuntimeError):
        pass

    assert cli.ending("train", _raising(TrainingError("diverged")), (TrainingError,))(["train"]) == 1
    assert capsys.readouterr().err == "train: error: diverged\n"
    with pytest.raises(KeyError):
        cli.ending("train", _raising(KeyError("bug")))(["train"])


def test_check_arguments_refuses_stray_arguments_and_missing_flags():
    given = type("Flags", (), dict(model="x", out=None))()
    with pytest.raises(cli.app.UsageError, match="Unexpected arguments: a b") as raised:
        cli.check_arguments(["export", "a", "b"], given)
    assert raised.value.exitcode == cli.EXIT_USAGE
    with pytest.raises(cli.app.UsageError, match="--out is required"):
        cli.check_arguments(["export", "a"], given, ("model", "out"), positional=True)
    cli.check_arguments(["export"], given, ("model",))


def test_own_flags_parse_positional_arguments_verbosity_and_refuse_unknown_flags(capsys):
    flag_values = cli.new_flags()
    flags.DEFINE_integer("top_k", 5, "classes shown", flag_values=flag_values)
    seen = []
    main = cli.main_of("predict", flag_values, "Label images.", lambda args: seen.append((args, flag_values.top_k)))
    assert main(["a.jpg", "--top_k=3", "b.jpg", "-v", "-1"]) is None and seen == [(["a.jpg", "b.jpg"], 3)]
    assert main(["a.jpg"]) is None and seen[-1] == (["a.jpg"], 5)  # flags reset between calls
    assert main(["--bogus=1"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("predict: error: Unknown command line flag 'bogus'")
    assert main(["--verbosity=loud"]) == cli.EXIT_USAGE
    assert "--verbosity must be an integer" in capsys.readouterr().err
    assert main(["--help"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "Label images." in out and "--top_k" in out and len(seen) == 2


def test_dispatcher_lists_refuses_and_runs_subcommands(capsys):
    assert dispatcher.main(["keras-preresnet", "--help"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "export", "predict", "convert", "table", "evaluate"))
    assert dispatcher.main(["keras-preresnet", "fly"]) == cli.EXIT_USAGE
    assert "unknown subcommand 'fly'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        dispatcher.main(["keras-preresnet", "convert", "--help"])
    assert raised.value.code == 0 and "--architecture" in capsys.readouterr().out


def test_every_subcommand_is_a_quiet_command_line():
    for module in console.COMMANDS.values():
        assert console.running_command_line(["-m"], ["python", "-m", module])
    assert console.running_command_line(["/venv/bin/keras-preresnet"], ["python", "/venv/bin/keras-preresnet"])
