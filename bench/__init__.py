"""Benchmarks of keras_preresnet against its peers (issue 6); not part of the installed package."""
