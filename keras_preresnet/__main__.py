"""``keras-preresnet SUBCOMMAND [flags]`` (or ``python -m keras_preresnet SUBCOMMAND``): one entry to the
package's command lines; ``keras-preresnet train --help`` is ``python -m keras_preresnet.train --help``."""

import importlib
import sys

from keras_preresnet import cli, console


def usage():
    names = "\n".join(f"  {name:<22} python -m {module}" for name, module in console.COMMANDS.items())
    return f"usage: {console.SCRIPT} SUBCOMMAND [flags]   ({console.SCRIPT} SUBCOMMAND --help lists its flags)\n\n" \
           f"subcommands:\n{names}\n"


def main(argv=None):
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] in cli.HELP:
        print(usage(), end="")
        return cli.EXIT_OK if len(argv) >= 2 else cli.EXIT_USAGE
    name = argv[1]
    if name not in console.COMMANDS:
        cli.report(console.SCRIPT, f"unknown subcommand {name!r}; choose one of {', '.join(console.COMMANDS)}.")
        return cli.EXIT_USAGE
    module = importlib.import_module(console.COMMANDS[name])
    if hasattr(module, "__path__"):  # a package: its command line is its __main__
        module = importlib.import_module(console.COMMANDS[name] + ".__main__")
    # The subcommand sees the command line it would see as its own script.
    sys.argv = [f"{console.SCRIPT} {name}", *argv[2:]]
    return module.run()


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
