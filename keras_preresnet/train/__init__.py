"""The trainer: the paper's recipes as named configs, tf.data pipelines, tf.distribute, an absl CLI.

``python -m keras_preresnet.train --config=NAME --data_dir=... --model_dir=...`` trains; ``python -m keras_preresnet.train.evaluate``
evaluates. See docs/training.md.
"""
