"""Training: datasets of photos -> augmented batches -> ``fit()`` -> weights in ``models/``.

Run it as ``python -m training train | evaluate | predict | fetch`` (see ``training.cli``).
"""
