"""Hostile Torch7 files: seeded corruptions of a synthetic checkpoint of the released layout.

Every case must end, within its time limit, in a conversion or in the package's own error
(``Torch7Error`` / ``ConversionError``), and a failed conversion must leave no output file. The
corruptions target the file's structure (the writer reports where each field is): truncations, bit
flips, huge counts, sizes and lengths, expanded tensors (size 2^40, stride 0), wrong type tags,
references to other objects (shared or cyclic modules), non-finite numbers and zeroed regions.
"""

import os
import random
import signal
import struct
import time

import numpy as np
import pytest

import torch7_writer as writer
from keras_preresnet import convert as convert_cli
from keras_preresnet import models
from keras_preresnet.pretrained import converter, torch7

BLOCKS = (1, 1, 1, 1)
CLASSES = 10
WIDTHS = (8, 16, 32, 64)
TIME_LIMIT = 20.0  # seconds per case (a hang); a case takes well under a second, even on a loaded machine
CI_CASES = 120
SWEEP_CASES = 2000
HUGE = {4: (2**31 - 1, 2**30, 2**24 + 13, -1, -(2**31)), 8: (2**40, 2**62, 2**63 - 1, 2**31, -1)}
TAGS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, 2**31 - 1)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The synthetic file's bytes and layout, and a Keras model of the same layout.

    Narrow stages (8..64 instead of 64..512) keep the file at half a megabyte, so a case takes
    milliseconds; every module class, field and nesting level of the released file is still there.
    """
    path = tmp_path_factory.mktemp("fuzz") / "model.t7"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "STAGE_WIDTHS", WIDTHS)
        patch.setitem(models.LAYOUTS[models.IMAGENET], "widths", WIDTHS)
        layout = writer.save(str(path), writer.released_preresnet(blocks=BLOCKS, classes=CLASSES, seed=3))
        model = models.build_resnet(200, layout="imagenet", units_per_stage=BLOCKS, classes=CLASSES,
                                    classifier_activation=None)
    return path.read_bytes(), layout, model


def _put(data, offset, width, value):
    data[offset:offset + width] = struct.pack("<i" if width == 4 else "<q", value)


def mutate(data, layout, rng):
    """One seeded corruption of ``data``; returns (description, bytes)."""
    data = bytearray(data)
    kind = rng.choice(["truncate", "flip", "flip", "huge", "huge", "expand", "tag", "reference", "number", "zero"])
    fields = lambda *roles: [f for f in layout if f[2] in roles]  # noqa: E731
    if kind == "truncate":
        end = rng.choice([rng.randrange(len(data)), rng.choice(layout)[0] + rng.randrange(8)])
        return f"truncate at {end}", bytes(data[:end])
    if kind == "flip":
        offset, width, role = rng.choice(layout)
        byte, bit = offset + rng.randrange(width), rng.randrange(8)
        data[byte] ^= 1 << bit
        return f"flip bit {bit} of byte {byte} ({role})", bytes(data)
    if kind == "huge":
        offset, width, role = rng.choice(fields("string length", "table size", "storage size", "dimensions",
                                                "size", "stride", "offset", "index"))
        value = rng.choice(HUGE[width])
        _put(data, offset, width, value)
        return f"{role} at {offset} = {value}", bytes(data)
    if kind == "expand":  # a tensor of 2^40 elements, all on one element of its storage
        dims = fields("dimensions")
        offset, _, _ = rng.choice(dims)
        n = struct.unpack_from("<i", data, offset)[0]
        for i in range(n):
            _put(data, offset + 4 + 8 * i, 8, 2**40)
            _put(data, offset + 4 + 8 * (n + i), 8, 0)
        return f"tensor at {offset} expanded to 2^40 with stride 0", bytes(data)
    if kind == "tag":
        offset, width, _ = rng.choice(fields("tag"))
        value = rng.choice(TAGS)
        _put(data, offset, width, value)
        return f"type tag at {offset} = {value}", bytes(data)
    if kind == "reference":
        indices = fields("index")
        offset, width, _ = rng.choice(indices)
        value = rng.randrange(1, 1 + max(struct.unpack_from("<i", data, o)[0] for o, _, _ in indices))
        _put(data, offset, width, value)
        return f"reference at {offset} = object {value}", bytes(data)
    if kind == "number":
        offset, _, _ = rng.choice(fields("number"))
        value = rng.choice([float("nan"), float("inf"), -float("inf"), 1e300, -1.0, 0.0])
        struct.pack_into("<d", data, offset, value)
        return f"number at {offset} = {value}", bytes(data)
    offset = rng.choice(layout)[0]
    length = rng.choice([4, 8, 16, 64, 256])
    data[offset:offset + length] = bytes(len(data[offset:offset + length]))
    return f"{length} bytes zeroed at {offset}", bytes(data)


def run_case(data, tmp_path, model, monkeypatch):
    """Converts ``data`` with the command line's function; returns (outcome, seconds)."""
    path, out = tmp_path / "case.t7", tmp_path / "out" / "model.weights.h5"
    path.write_bytes(data)
    monkeypatch.setattr(models, "build_named", lambda *args, **kwargs: model)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    started = time.perf_counter()
    try:
        convert_cli.convert_file(path, out)
        outcome = "converted"
    except (torch7.Torch7Error, converter.ConversionError) as error:
        outcome = type(error).__name__
        assert "\n" not in str(error) and len(str(error)) < 1000, "the message is not one readable line"
        leftovers = os.listdir(out.parent) if out.parent.exists() else []
        assert not leftovers, f"a failed conversion left {leftovers}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    assert seconds < TIME_LIMIT
    if out.exists():
        out.unlink()
    return outcome, seconds


def fuzz(original, tmp_path, monkeypatch, cases, seed):
    data, layout, model = original
    rng = random.Random(seed)
    outcomes, slowest = {}, 0.0
    for case in range(cases):
        description, mutated = mutate(data, layout, rng)
        try:
            outcome, seconds = run_case(mutated, tmp_path, model, monkeypatch)
        except _Hang:
            pytest.fail(f"case {case} ({description}) ran past {TIME_LIMIT} s")
        except AssertionError as error:
            pytest.fail(f"case {case} ({description}): {error}")
        except Exception as error:  # noqa: BLE001 - any other type is the failure under test
            pytest.fail(f"case {case} ({description}) raised {type(error).__name__}: {error!s:.300}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        slowest = max(slowest, seconds)
    return outcomes, slowest


def test_the_unmutated_file_converts(original, tmp_path, monkeypatch):
    assert run_case(original[0], tmp_path, original[2], monkeypatch)[0] == "converted"


def test_corrupted_files_end_in_the_packages_error_quickly_and_leave_no_output(original, tmp_path, monkeypatch):
    outcomes, slowest = fuzz(original, tmp_path, monkeypatch, CI_CASES, seed=0)
    # Most corruptions of the structure must be caught (a flipped bit in a number may still convert).
    assert outcomes.get("Torch7Error", 0) + outcomes.get("ConversionError", 0) > CI_CASES * 0.7, outcomes
    assert outcomes.get("Torch7Error", 0) > 5 and outcomes.get("ConversionError", 0) > 5, outcomes
    print(f"{CI_CASES} cases: {outcomes}; slowest {slowest:.2f} s")


@pytest.mark.slow
def test_fuzz_sweep(original, tmp_path, monkeypatch):
    outcomes, slowest = fuzz(original, tmp_path, monkeypatch, SWEEP_CASES, seed=1)
    print(f"{SWEEP_CASES} cases: {outcomes}; slowest {slowest:.2f} s")


def test_the_two_reported_corruptions_are_refused(original, tmp_path):
    """A huge class-name length deep in the tree and a 1-D tensor of 2^40 elements with stride 0."""
    data, layout, _ = original
    names = [offset for offset, _, role in layout if role == "string length"
             if data[offset + 4:offset + 9] in (b"nn.Sp", b"cudnn")]
    deep = bytearray(data)
    _put(deep, names[len(names) // 2], 4, struct.unpack_from("<i", data, names[len(names) // 2])[0] + 2**24)
    (tmp_path / "deep.t7").write_bytes(bytes(deep))
    with pytest.raises(torch7.Torch7Error, match="class name of"):
        torch7.load(tmp_path / "deep.t7")

    path = tmp_path / "expanded.t7"
    with open(path, "wb") as f:
        tensor_writer = writer._Writer(f)
        tensor_writer.tensor(writer.Storage(np.zeros(10)), 0, (2**40,), key=object())
    data = bytearray(path.read_bytes())
    [stride] = [offset for offset, _, role in tensor_writer.layout if role == "stride"]
    _put(data, stride, 8, 0)
    path.write_bytes(bytes(data))
    with pytest.raises(torch7.Torch7Error, match="1099511627776 elements"):
        torch7.load(path)


def test_nested_tables_end_in_a_torch7_error_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.t7"
    deep = []
    for _ in range(300):
        deep = [deep]
    with open(path, "wb") as f:
        writer._Writer(f).object(deep)
    with pytest.raises(torch7.Torch7Error, match="nested over"):
        torch7.load(path)


def test_shared_or_cyclic_modules_are_refused(original, tmp_path):
    """A network is a tree; references that make a module its own child (or a child twice) are corruption."""
    model = original[2]
    for make in ("cycle", "shared"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(writer, "STAGE_WIDTHS", WIDTHS)
            checkpoint = writer.released_preresnet(blocks=BLOCKS, classes=CLASSES, seed=3)
        stage = checkpoint.modules[4]
        stage.add(checkpoint if make == "cycle" else stage.modules[0])
        path = tmp_path / f"{make}.t7"
        writer.save(str(path), checkpoint)
        with pytest.raises(converter.ConversionError, match="occurs twice in the network"):
            converter.convert(str(path), model)


@pytest.mark.parametrize("field, value, match", [
    ("weight", "not a tensor", "`weight` is a str, expected a tensor"),
    ("nOutputPlane", {"a": 1}, "`nOutputPlane` is {'a': 1.0}, expected a finite number"),
    ("kW", float("inf"), "`kW` is inf, expected a finite number"),
])
def test_fields_of_the_wrong_type_are_conversion_errors(original, tmp_path, field, value, match):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "STAGE_WIDTHS", WIDTHS)
        checkpoint = writer.released_preresnet(blocks=BLOCKS, classes=CLASSES, seed=3, flat_storage=False)
    checkpoint.modules[0].fields[field] = value
    path = tmp_path / "wrong.t7"
    writer.save(str(path), checkpoint)
    with pytest.raises(converter.ConversionError, match=match):
        converter.convert(str(path), original[2])


def test_table_sizes_and_keys_are_checked_before_use(tmp_path):
    path = tmp_path / "table.t7"
    with open(path, "wb") as f:
        table_writer = writer._Writer(f)
        table_writer.object({"a": 1.0, None: 2.0})
    with pytest.raises(torch7.Torch7Error, match="a table key that is None"):
        torch7.load(path)
    data = bytearray(path.read_bytes())
    [size] = [offset for offset, _, role in table_writer.layout if role == "table size"]
    _put(data, size, 4, 2**31 - 1)
    path.write_bytes(bytes(data))
    # Refused from the count alone, before reading any entry.
    with pytest.raises(torch7.Torch7Error, match=r"table of 2147483647 entries at byte 8, with \d+ bytes left"):
        torch7.load(path)
