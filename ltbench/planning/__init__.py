"""From a command to a plan: the checked catalog of recipes, the stages a method consumes, run ids
and the sweep's plan on disk.
"""
