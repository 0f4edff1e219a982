"""Hyperparameter search (`aeflow tune`): settings, the rows it scores on, objectives, the seeded
round-based search loop, study storage and its outputs. See docs/tuning.md."""
