"""Adsorption by Monte Carlo: RASPA3 (PyPI ``raspalib``) Widom and GCMC with the field's screening protocol,
UFF + TraPPE parameters, and Peng-Robinson fugacities."""
