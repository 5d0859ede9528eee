"""Readers for the dataset formats bnnx accepts: IDX, CIFAR python batches, image folders.

Each module only parses; `search.datasets` owns the splits and the registry of names.
"""
