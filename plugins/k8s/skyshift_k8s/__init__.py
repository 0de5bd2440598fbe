"""SkyShift's Kubernetes backend plugin and the fake cluster used to test it."""
