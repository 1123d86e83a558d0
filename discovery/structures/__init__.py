"""Structures: the MOF record (all atoms, the coarse-grained view, provenance), CIF reading and writing with
charges, element facts, periodic bonds, supercells, validity checks and probe-energy descriptors."""
