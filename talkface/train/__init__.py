"""Training: the loop, the stages and their datasets, the all-stages run, the settings and their CLI."""
