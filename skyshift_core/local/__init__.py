"""Running SkyShift's own processes on one machine: etcd, the API server, the controller manager."""
