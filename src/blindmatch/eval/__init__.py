"""Evaluation tools: image transforms and robustness benchmarks for perceptual hashing."""
