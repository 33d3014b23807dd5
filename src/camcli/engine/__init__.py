"""The engine: devices, hooks, layers and targets (the CAM methods themselves are :mod:`camcli.methods`)."""
