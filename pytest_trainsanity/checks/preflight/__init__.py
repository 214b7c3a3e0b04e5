"""Pre-flight checks: loss at init, one-batch overfit, batch independence, parameter updates,
finite training and mixed batches (``measure.py`` judges, ``run.py`` runs)."""
