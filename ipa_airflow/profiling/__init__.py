"""Profiling model variants: time a model at batch sizes on a device and summarise the timings."""
