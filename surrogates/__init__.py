"""Learned property models (GNN adsorption ensemble, CG-dynamics transport model). Arrives with the surrogates."""
