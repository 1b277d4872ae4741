"""curves.png drawn like the paper's figures: training loss dashed, test error solid, twin axes."""

from keras_preresnet.train import plotting

ROWS = [dict(epoch=e, step=100 * e, train_loss=2.0 / e, test_error=60.0 - 5 * e) for e in range(1, 5)]


def test_training_loss_is_dashed_and_test_error_solid_on_twin_axes():
    figure = plotting.draw_curves(ROWS, title="cifar10_preact_resnet164")
    loss_axis, error_axis = figure.axes
    assert loss_axis.get_shared_x_axes().joined(loss_axis, error_axis)
    (loss,), (error,) = loss_axis.get_lines(), error_axis.get_lines()
    assert loss.get_linestyle() == "--" and error.get_linestyle() == "-"
    assert list(loss.get_ydata()) == [r["train_loss"] for r in ROWS]
    assert list(error.get_ydata()) == [r["test_error"] for r in ROWS]
    assert list(loss.get_xdata()) == [100, 200, 300, 400]
    assert error_axis.get_ylabel() == "test error (%)" and loss_axis.get_ylabel() == "training loss"


def test_curves_png_is_written(tmp_path):
    plotting.write_curves(str(tmp_path), ROWS)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
