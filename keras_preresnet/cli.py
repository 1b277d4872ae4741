"""What every command line of the package does alike: absl flags, the argument check, the one-line error
ending and the exit codes.

A command ends in one of four ways: 0 done; 2 a usage error (an unknown or malformed flag, a missing
required flag, a stray argument); 1 a failure the user can act on (a bad value, a file that cannot be
read or written, a training run that cannot go on), reported as one line ``PROG: error: MESSAGE`` on
stderr without a traceback; 130 interrupted (Ctrl-C). The quiet TensorFlow start-up the command lines
share is ``keras_preresnet.console`` (it runs when the package is imported, before Keras loads).

Commands with positional arguments (predict, convert) and those run in-process by tests keep their flags
in a ``FlagValues`` of their own (``new_flags``, ``parse``), so that several commands can live in one
process; the trainer and the exporter define theirs on absl's global ``FLAGS`` and start with ``run``.
"""

import sys

from absl import app, flags, logging

from keras_preresnet import console

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
HELP = ("--help", "-h", "--helpfull", "--helpshort", "-?")


class CommandError(Exception):
    """A failure a command line reports in one line (exit status 1); commands subclass it."""


# Reported in one line with exit status 1: bad values, files that cannot be read or written (any OSError:
# missing, unreadable, a full disk) and the commands' own failures. Anything else is a bug: a traceback.
FAILURES = (ValueError, OSError, CommandError)


def usage_error(message):
    return app.UsageError(message, exitcode=EXIT_USAGE)


def check_arguments(argv, flag_values, required=(), positional=False):
    """Refuses positional arguments (unless ``positional``) and any flag of ``required`` left unset, as
    usage errors. ``argv`` starts with the program's name, as absl passes it."""
    if len(argv) > 1 and not positional:
        raise usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
    for name in required:
        if not getattr(flag_values, name):
            raise usage_error(f"--{name} is required.")


def message(error):
    """The one line that reports ``error``: its text, without the ``[Errno N]`` the OS's own errors begin
    with (subclasses of the package, such as a write error, already say it all)."""
    if isinstance(error, OSError) and type(error).__module__ == "builtins" and error.strerror:
        names = [repr(name) for name in (error.filename, error.filename2) if name is not None]
        return error.strerror + (f": {' -> '.join(names)}" if names else "")
    return str(error)


def report(prog, text):
    print(f"{prog}: error: {text}", file=sys.stderr, flush=True)


def ending(prog, main, failures=(), interrupted=None):
    """``main`` with the one-line error ending: usage errors exit 2, ``FAILURES`` (and ``failures``) 1,
    Ctrl-C 130 with the hint ``interrupted`` (what to do next)."""

    def wrapped(argv):
        try:
            return main(argv)
        except app.UsageError as error:
            report(prog, error)
            return EXIT_USAGE
        except FAILURES + tuple(failures) as error:
            report(prog, message(error))
            return EXIT_FAILURE
        except KeyboardInterrupt:
            print(f"{prog}: interrupted" + (f"; {interrupted}" if interrupted else "."), file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED

    return wrapped


def _parse_global_flags(prog):
    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            report(prog, f"{error} (--help lists the flags)")
            sys.exit(EXIT_USAGE)

    return parse


def _help_from(module):
    """absl's ``--help`` describes the script it runs (``sys.argv[0]``) and its flags: a console script
    (``keras-preresnet-train``, ``keras-preresnet train``) runs ``module``, so lend it that module's."""
    script, main_module = sys.argv[0], sys.modules.get("__main__")
    for flag in flags.FLAGS.flags_by_module_dict().get(module.__name__, ()):
        flags.FLAGS.register_flag_by_module(script, flag)
    if main_module is not None and main_module is not module and not main_module.__doc__:
        main_module.__doc__ = module.__doc__


def run(prog, main, failures=(), interrupted=None):
    """Runs a command whose flags are on absl's global ``FLAGS`` (absl's ``--help`` and ``--verbosity``),
    with the shared error ending and exit codes."""
    _help_from(sys.modules[main.__module__])
    app.run(ending(prog, main, failures, interrupted), flags_parser=_parse_global_flags(prog))


def new_flags():
    """A command's own flags, with ``-v/--verbosity`` as absl's logging defines it on the global flags."""
    flag_values = flags.FlagValues()
    flags.DEFINE_string("verbosity", None, "log level of TensorFlow and absl: -3 fatal ... 0 info, 1 debug, or "
                        "a level name (default: errors only, or $TF_CPP_MIN_LOG_LEVEL)", short_name="v",
                        flag_values=flag_values)
    return flag_values


def parse(prog, flag_values, argv):
    """Parses ``argv`` (without the program's name) into ``flag_values``; returns the positional arguments.
    A malformed flag is a usage error."""
    flag_values.unparse_flags()
    try:
        positional = flag_values([prog] + list(argv))[1:]
        verbosity = None if flag_values.verbosity is None else console.parse_verbosity(flag_values.verbosity)
    except (flags.Error, ValueError) as error:
        raise usage_error(f"{error} (--help lists the flags)") from None
    if verbosity is not None:
        logging.set_verbosity(console.python_log_level(verbosity))
    return positional


def main_of(prog, flag_values, doc, body, failures=()):
    """The ``main(argv=None) -> exit status`` of a command with flags of its own: ``--help`` prints ``doc``
    and the flags; otherwise ``body(positional arguments)`` runs after the flags are parsed, with the
    shared error ending. ``argv`` leaves out the program's name (default ``sys.argv[1:]``)."""

    def main(argv=None):
        argv = sys.argv[1:] if argv is None else list(argv)
        if any(arg in HELP for arg in argv):
            print(f"usage: {prog} [flags]\n\n{doc.strip()}\n\nflags:\n{flag_values.get_help()}")
            return EXIT_OK
        return ending(prog, lambda args: body(parse(prog, flag_values, args)), failures)(argv)

    return main
