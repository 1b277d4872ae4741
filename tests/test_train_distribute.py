"""Distribution: MirroredStrategy over 2 logical CPU devices, MultiWorkerMirroredStrategy with 2 worker
processes on 127.0.0.1, and the global / per-replica batch rule."""

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from model_testing import weights_file_arrays
from keras_preresnet.train import distribute
from support import REPO, subprocess_env

SMALL = ["--config=cifar10_preact_resnet110", "--depth=8", "--recipe=cifar_public_code", "--lr_scaling=none",
         "--epochs=1", "--batch_size=32", "--train_examples=128", "--eval_examples=64", "--noprogress"]


class _Replicas:
    def __init__(self, count):
        self.num_replicas_in_sync = count


def test_global_batch_splits_evenly_over_replicas():
    assert distribute.global_batch_size(_Replicas(4), 256) == 256
    assert distribute.global_batch_size(_Replicas(4), None, per_replica_batch_size=32) == 128
    with pytest.raises(ValueError, match="multiple of the 3 replicas"):
        distribute.global_batch_size(_Replicas(3), 128)
    with pytest.raises(ValueError, match="not both"):
        distribute.global_batch_size(_Replicas(2), 128, per_replica_batch_size=64)


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable"):
        distribute.make_strategy("multi_worker")


MIRRORED_CHECK = textwrap.dedent("""
    import json, sys
    from keras_preresnet.train import configs, distribute, trainer
    distribute.configure_cpu_devices(2)
    strategy = distribute.make_strategy("mirrored")
    settings = trainer.Settings(model_dir=sys.argv[1], data_dir=sys.argv[2], depth=8, epochs=1, batch_size=32,
                                train_examples=128, eval_examples=64, progress=False, recipe="cifar_public_code")
    run = trainer.Trainer(configs.get_config("cifar10_preact_resnet110"), settings, strategy)
    summary = run.run()
    # Largest difference between the two replicas' copies of any weight (BN statistics included).
    spread = max(float(abs(v.value.values[0] - v.value.values[1]).numpy().max()) for v in run.model.weights)
    print(json.dumps(dict(replicas=strategy.num_replicas_in_sync, spread=spread, summary=summary,
                          devices=[str(v) for v in run.model.weights[0].value.values])))
""")


def test_mirrored_strategy_over_two_logical_cpus_keeps_replicas_identical(tmp_path, cifar_dir):
    result = subprocess.run([sys.executable, "-c", MIRRORED_CHECK, str(tmp_path), str(cifar_dir)], cwd=REPO,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["summary"]["replicas"] == 2
    assert report["summary"]["global_batch"] == 32 and report["summary"]["steps"] == 4
    assert report["spread"] == 0.0
    # The test error summed over the two replicas is that of the saved weights on one device.
    from keras_preresnet.train import configs
    from keras_preresnet.train.evaluate import evaluate_weights

    single = evaluate_weights(configs.get_config("cifar10_preact_resnet110"), str(tmp_path / "last.weights.h5"),
                              str(cifar_dir), depth=8, limit=64, strategy=distribute.make_strategy("one_device"))
    assert single["images"] == 64
    assert report["summary"]["final_test_error"] == pytest.approx(single["top1_error"], abs=1e-6)
    assert report["summary"]["final_test_top5_error"] == pytest.approx(single["top5_error"], abs=1e-6)


STEP_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    from keras_preresnet.datasets import load_cifar
    from keras_preresnet.train import configs, distribute, trainer
    distribute.configure_cpu_devices(2)
    images, labels = load_cifar(sys.argv[2], "cifar10", "train")
    # Each replica gets the same 16 images, so its BatchNorm batch statistics are those of the whole
    # batch on one device and the two steps must agree.
    half = (images[:16].astype(np.float32) / 255 - 0.5) / 0.25, labels[:16]
    batch = tf.data.Dataset.from_tensors(tuple(np.concatenate([a, a]) for a in half))

    def one_step(strategy, folder, start=None):
        settings = trainer.Settings(model_dir=sys.argv[1] + folder, data_dir=sys.argv[2], depth=8, epochs=1,
                                    batch_size=32, train_examples=128, eval_examples=64, progress=False,
                                    recipe="cifar_public_code", lr_scaling="none")
        run = trainer.Trainer(configs.get_config("cifar10_preact_resnet110"), settings, strategy)
        if start is not None:
            run.model.set_weights(start)
        before = run.model.get_weights()
        run._make_steps()
        loss, _ = run.train_step(iter(strategy.experimental_distribute_dataset(batch)))
        run.sync_statistics()
        return before, [a - b for a, b in zip(run.model.get_weights(), before)], float(loss)

    start, single, single_loss = one_step(distribute.make_strategy("one_device"), "/single")
    mirrored_strategy = distribute.make_strategy("mirrored")
    _, mirrored, mirrored_loss = one_step(mirrored_strategy, "/mirrored", start)
    errors = [float(np.abs(m - s).max() / max(np.abs(s).max(), 1e-12)) for m, s in zip(mirrored, single)]
    print(json.dumps(dict(replicas=mirrored_strategy.num_replicas_in_sync, losses=[single_loss, mirrored_loss],
                          moved=sum(bool(np.abs(s).max() > 0) for s in single), weights=len(single),
                          worst=max(errors))))
""")


def test_mirrored_step_over_two_replicas_updates_weights_as_one_device_step(tmp_path, cifar_dir):
    """The loss is divided by the global batch on every replica, and the replicas' gradients are summed,
    so one step of 2 replicas on a batch moves the weights exactly as one device on the same batch."""
    result = subprocess.run([sys.executable, "-c", STEP_CHECK, str(tmp_path), str(cifar_dir)], cwd=REPO,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # Every weight moves (BatchNorm moving statistics included), by the same amount to float32 rounding;
    # a loss divided by the per-replica batch doubles the update (relative error 1). Measured: 1.2e-3 at
    # worst (a BatchNorm moving variance), 6e-4 and below for the others.
    assert report["moved"] == report["weights"] and report["worst"] < 5e-3, report
    assert report["losses"][1] == pytest.approx(report["losses"][0], rel=1e-5)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_with_two_processes_finishes_with_identical_weights(tmp_path, cifar_dir):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    model_dir = tmp_path / "run"
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "keras_preresnet.train", *SMALL, "--strategy=multi_worker", f"--data_dir={cifar_dir}",
             f"--model_dir={model_dir}"],
            cwd=REPO, env=subprocess_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=400)[0])
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    chief = weights_file_arrays(model_dir / "last.weights.h5")
    other = weights_file_arrays(model_dir / "workers" / "worker_1" / "last.weights.h5")
    assert chief.keys() == other.keys() and len(chief) > 20
    for key in chief:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    summary = json.loads((model_dir / "metrics.json").read_text())
    assert summary["replicas"] == 2 and summary["steps"] == 128 // 32
    # Only the chief writes the run's files.
    assert not (model_dir / "workers" / "worker_1" / "metrics.json").exists()


def test_one_device_batches_come_from_the_pipelines_own_iterator():
    # The strategy's iterator wraps the pipeline in datasets with tf.data's default options, whose
    # autotuning thread's sleep every deleted (per-epoch) iterator waited out: on one device the trainer
    # iterates the pipeline itself, with the same batches.
    import tensorflow as tf

    from keras_preresnet.train import data

    images = np.arange(16 * 4 * 4 * 3, dtype=np.uint8).reshape(16, 4, 4, 3)
    source = data.Source(tf.data.Dataset.from_tensor_slices((images, np.arange(16))), 16, 10, False, "arrays")
    identity = lambda image, label, key: (tf.cast(image, tf.float32), label)  # noqa: E731
    dataset_fn = data.train_dataset_fn(source, identity, 8, steps=2, epoch=1, seed=3)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    iterator = distribute.iterate(strategy, dataset_fn)
    assert isinstance(iterator, tf.data.Iterator) and not isinstance(iterator, tf.distribute.DistributedIterator)
    ours = [(x.numpy(), y.numpy()) for x, y in iterator]
    theirs = [(x.numpy(), y.numpy()) for x, y in strategy.distribute_datasets_from_function(dataset_fn)]
    assert len(ours) == len(theirs) == 2
    for (a, b), (c, d) in zip(ours, theirs):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
