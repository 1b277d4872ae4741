"""The released ImageNet weights: the Torch7 reader, the converter onto a Keras model, the weights records."""
