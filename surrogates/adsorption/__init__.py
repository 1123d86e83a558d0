"""The adsorption surrogate: a deep ensemble of two-scale GNNs over the coarse-grained view, as a BoTorch
model (or a GP on its features), its training data (the pool table), training, benchmarks, and the campaign
surrogate (``campaign_model``)."""
