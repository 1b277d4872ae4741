"""What the trainer's command lines (``train``, ``train.table``, ``train.evaluate``) check alike."""

from absl import app


def check_arguments(argv, flag_values, required):
    """Refuses positional arguments and any flag of ``required`` left unset, as absl usage errors."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for name in required:
        if not getattr(flag_values, name):
            raise app.UsageError(f"--{name} is required.")
