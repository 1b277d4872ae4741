"""The trainer: the paper's recipes as named configs, tf.data pipelines, tf.distribute, an absl CLI.

``python -m train --config=NAME --data_dir=... --model_dir=...`` trains; ``python -m train.evaluate``
evaluates. See docs/training.md.
"""
