"""SkyShift cluster manager for Slurm, and local single-node Slurm clusters for tests and the demo."""
