"""bench/fidelity.py and its PyTorch reference (bench/torch_cifar.py): the reference's pieces against
fb.resnet.torch's definitions, and one tiny harness run of both implementations on real CIFAR images."""

import argparse
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench import fidelity, torch_cifar  # noqa: E402

RESNET20_PARAMS = 269_722  # the ResNet paper's 0.27M: weights, BN gammas/betas and the classifier


def test_reference_networks_have_the_papers_parameter_counts():
    for unit in torch_cifar.UNITS:
        assert torch_cifar.parameter_count(torch_cifar.CifarResNet(20, unit)) == RESNET20_PARAMS
    assert torch_cifar.parameter_count(torch_cifar.CifarResNet(56, "original")) == 853_018
    with pytest.raises(ValueError, match="6n\\+2"):
        torch_cifar.CifarResNet(21)


def test_option_a_subsamples_and_appends_zero_channels():
    x = torch.arange(2 * 16 * 8 * 8, dtype=torch.float32).reshape(2, 16, 8, 8)
    y = torch_cifar.option_a(x, 32, 2)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


def test_initialisation_is_fb_resnet_torchs():
    torch.manual_seed(0)
    model = torch_cifar.CifarResNet(20)
    conv = model.features[-1].conv2  # 64 -> 64, 3x3: std sqrt(2 / (9 * 64))
    assert conv.bias is None
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)
    bn = model.features[1]
    assert (bn.weight == 1).all() and (bn.bias == 0).all() and bn.eps == 1e-5 and bn.momentum == 0.1
    assert (model.fc.bias == 0).all() and model.fc.weight.abs().max().item() <= 1 / 8


def _torch7_sgd(params, grads, state, lr, momentum=0.9, weight_decay=1e-4, nesterov=True):
    """optim.sgd of Torch7 with dampening 0, written from its source: dfdx += wd x; the first step's
    buffer is dfdx, then buffer = m buffer + dfdx; Nesterov: dfdx += m buffer, else dfdx = buffer;
    x -= lr dfdx."""
    for i, (x, g) in enumerate(zip(params, grads)):
        d = g + weight_decay * x
        state[i] = d.clone() if i not in state else momentum * state[i] + d
        d = d + momentum * state[i] if nesterov else state[i]
        x -= lr * d


@pytest.mark.parametrize("nesterov", [True, False])
def test_torch_sgd_is_torch7_optim_sgd(nesterov):
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(5, generator=generator), torch.randn(3, generator=generator)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.0, nesterov=nesterov, weight_decay=1e-4)
    state = {}
    for step, lr in enumerate((0.1, 0.1, 0.01)):
        grads = [torch.randn(w.shape, generator=generator) for w in weights]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        _torch7_sgd(weights, grads, state, lr, nesterov=nesterov)
        for p, w in zip(params, weights):
            torch.testing.assert_close(p.detach(), w, rtol=1e-6, atol=1e-7)


def test_augmentation_flips_then_crops_the_zero_padded_image():
    x = torch.randn(6, 3, 32, 32)
    y = torch_cifar.augment(x, torch.Generator().manual_seed(1))
    for image, out in zip(x, y):
        candidates = [torch.nn.functional.pad(v, (4,) * 4) for v in (image, image.flip(2))]
        assert any(torch.equal(p[:, a:a + 32, b:b + 32], out)
                   for p in candidates for a in range(9) for b in range(9))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if not os.path.isdir(fidelity.DEFAULT_DATA):
        pytest.skip(f"no CIFAR subset at {fidelity.DEFAULT_DATA}")
    out = tmp_path_factory.mktemp("fidelity") / "tiny.json"
    argv = ["--rows=resnet20", "--budgets=4", "--seeds=0", "--train_examples=256", "--eval_examples=128",
            "--threads=1", f"--out={out}"]
    assert fidelity.main(argv) == 0
    with open(out) as f:
        return out, argv, json.load(f)


@pytest.mark.slow  # two trainer processes and a PyTorch one: about 50 s of CPU
def test_tiny_run_records_both_implementations(tiny_run):
    out, _, results = tiny_run
    assert results["meta"]["train_examples"] == 256 and results["meta"]["threads"] == 1
    ours, peer = (results["cells"][fidelity.cell_key("resnet20", 4, 0, impl)] for impl in fidelity.IMPLEMENTATIONS)
    assert ours["params"] == peer["params"] == RESNET20_PARAMS
    for cell in (ours, peer):
        # 256 images at batch 128: 2 steps an epoch, 2 epochs.
        assert [row["epoch"] for row in cell["rows"]] == [1, 2]
        assert all(math.isfinite(row["train_loss"]) and 0 <= row["test_error"] <= 100 for row in cell["rows"])
        assert abs(cell["initial_loss"] - math.log(10)) < 0.75
        assert cell["images_per_second"] > 0
    # The reference ran at the learning rates the trainer reported, step for step.
    assert [row["learning_rate"] for row in peer["rows"]] == pytest.approx(
        [row["learning_rate"] for row in ours["rows"]])
    (line,) = results["summary"]
    assert line["row"] == "resnet20" and isinstance(line["target_met"], bool) and line["speed_ratio"] > 0
    assert line["delta"] == pytest.approx(abs(ours["final_test_error"] - peer["final_test_error"]))
    assert os.path.exists(os.path.splitext(out)[0] + ".md")


def test_paired_initial_weights_are_the_references_initial_network(tmp_path):
    if not os.path.isdir(fidelity.DEFAULT_DATA):
        pytest.skip(f"no CIFAR subset at {fidelity.DEFAULT_DATA}")
    from keras_preresnet.train import configs, network

    options = argparse.Namespace(data_dir=fidelity.DEFAULT_DATA, train_examples=64)
    spec = dict(fidelity._initial_spec("resnet20", 3, options), weights=str(tmp_path / "initial.weights.h5"))
    answer = fidelity.worker_paired_initial(spec)
    # What the trainer builds from --init_weights=<that file>.
    model = network.build_network(configs.get_config("cifar10_resnet20"), 10, init_weights=spec["weights"],
                                  init_classes=10)
    torch.manual_seed(3)
    net = torch_cifar.CifarResNet(20, "original")
    _, _, (images, labels), mean, std = fidelity._load_images(spec)
    x = torch_cifar.normalise(images, mean, std)
    net.eval()
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(np.asarray(model(x.numpy().transpose(0, 2, 3, 1), training=False)), expected,
                               rtol=1e-4, atol=1e-5)
    net.train()
    with torch.no_grad():
        assert answer["initial_loss"] == pytest.approx(
            torch_cifar.initial_loss(net, x, torch.from_numpy(np.asarray(labels, np.int64)), spec["batch"]),
            rel=1e-5)
    assert answer["params"] == RESNET20_PARAMS


@pytest.mark.slow  # as tiny_run: two trainer processes and a PyTorch one
def test_a_paired_run_starts_both_from_the_same_network(tmp_path):
    if not os.path.isdir(fidelity.DEFAULT_DATA):
        pytest.skip(f"no CIFAR subset at {fidelity.DEFAULT_DATA}")
    out = tmp_path / "paired.json"
    assert fidelity.main(["--rows=resnet20", "--budgets=2", "--seeds=1", "--train_examples=256",
                          "--eval_examples=128", "--threads=1", "--paired_init=true", f"--out={out}"]) == 0
    with open(out) as f:
        results = json.load(f)
    assert results["meta"]["paired_init"] is True
    ours, peer = (results["cells"][fidelity.cell_key("resnet20", 2, 1, impl)] for impl in fidelity.IMPLEMENTATIONS)
    assert "--init_weights=" in ours["command"] and ours["paired_init"]
    assert ours["initial_loss"] == pytest.approx(peer["initial_loss"], rel=1e-5)
    (line,) = results["summary"]
    assert line["seed_differences"] == [pytest.approx(ours["final_test_error"] - peer["final_test_error"])]
    with open(os.path.splitext(out)[0] + ".md") as f:
        assert "Paired initialisation" in f.read()


@pytest.mark.slow
def test_a_second_run_resumes_without_training_again(tiny_run):
    out, argv, results = tiny_run
    before = os.path.getmtime(out)
    assert fidelity.main(argv) == 0  # every cell is there: only the summary is rewritten
    with open(out) as f:
        again = json.load(f)
    assert again["cells"] == results["cells"] and os.path.getmtime(out) >= before
    with pytest.raises(SystemExit, match="other settings"):
        fidelity.main([a for a in argv if not a.startswith("--train_examples")] + ["--train_examples=128"])


def test_an_interrupted_reference_run_continues_from_its_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    data = (images, rng.integers(0, 10, 16))
    common = dict(depth=8, unit="original", seed=3, train_data=data, test_data=data, initial_data=data,
                  mean=(125.0,) * 3, std=(64.0,) * 3, batch=8, steps_per_epoch=2, lr_boundaries=[2, 3],
                  learning_rates=[0.1, 0.01, 0.001], threads=1, log=lambda text: None)
    whole = torch_cifar.train(total_steps=4, **common)
    checkpoint = str(tmp_path / "torch.pt")
    torch_cifar.train(total_steps=2, checkpoint=checkpoint, **common)  # stops after epoch 1
    resumed = torch_cifar.train(total_steps=4, checkpoint=checkpoint, **common)
    assert [r["epoch"] for r in resumed["rows"]] == [1, 2]
    for key in ("train_loss", "test_error", "learning_rate"):
        assert [r[key] for r in resumed["rows"]] == pytest.approx([r[key] for r in whole["rows"]], rel=1e-5)


def test_a_failed_run_is_reported_and_left_for_the_next_start(tmp_path, capsys):
    empty = tmp_path / "no_cifar_here"
    empty.mkdir()
    out = tmp_path / "failed.json"
    argv = ["--rows=resnet20", "--budgets=2", "--seeds=0", "--threads=1", f"--data_dir={empty}", f"--out={out}"]
    assert fidelity.main(argv) == 1
    printed = capsys.readouterr().out
    assert "resnet20|2|0|ours FAILED" in printed and "resnet20|2|0|torch FAILED" in printed
    assert "start the same command again" in printed
    with open(out) as f:
        assert json.load(f)["cells"] == {}


def test_a_row_passes_its_own_trainer_flags():
    from absl import flags
    from keras_preresnet.train import __main__  # noqa: F401 (defines the trainer's flags)

    options = argparse.Namespace(data_dir="d", recipe=None, nesterov=None, train_examples=None, eval_examples=None)
    warm = fidelity.ours_command("resnet56_warmup", 1560, 0, options, "m")
    assert "--warmup_iterations=400" in warm and "--config=cifar10_resnet56" in warm
    assert not any(a.startswith("--warmup") for a in fidelity.ours_command("resnet56", 1560, 0, options, "m"))
    names = {a[2:].split("=")[0].removeprefix("no") for a in warm if a.startswith("--")}
    assert names <= set(flags.FLAGS), names - set(flags.FLAGS)
