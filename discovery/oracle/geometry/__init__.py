"""Pore geometry from Zeo++ (PyPI ``pyzeo``, run in child processes): diameters, surface area, void fraction,
and the pockets a CO2 probe cannot reach."""
