"""Recipes and run configurations: the frozen specs, recipe files, value ranges, ``--set``
overrides, the run's identity (hash) and the record's schema.
"""
