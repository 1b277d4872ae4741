"""Benchmarks of keras_preresnet against its peers; not part of the installed package."""
