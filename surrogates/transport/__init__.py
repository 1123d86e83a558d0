"""The transport surrogate: coarse-grained CO2 dynamics with long (5 ps) steps (``dynamics``), its training
on MD trajectories, rollouts that predict D(CO2), the benchmark against MD, and the campaign scorer."""
