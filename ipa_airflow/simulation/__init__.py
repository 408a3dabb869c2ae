"""Trace-driven simulation of a pipeline chain under an adaptation policy."""
