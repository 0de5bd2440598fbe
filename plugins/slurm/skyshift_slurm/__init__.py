"""SkyShift cluster manager for Slurm, and local single-node Slurm clusters for tests and the demo.

The manager is `skyshift_slurm.manager.SlurmClusterManager`, registered as `slurm` in the
`skyshift.cluster_managers` entry-point group. Importing this package does not import it, so
the local-cluster tool works with the standard library alone.
"""
