"""Transport by molecular dynamics: CO2 self-diffusivity in LAMMPS, the MSD fit, the MD benchmark and the
reference trajectories the transport surrogate learns from."""
