"""The controller manager process and the controllers it runs while it leads."""
