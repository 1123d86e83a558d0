"""The building-block library and what is made from it: building blocks and RCSR topologies (pormake),
assembly into atoms, the curated design space, datasets, and the design-space proposals and candidates."""
