"""Placement, the state store, the reconciler and the daemon: the control plane."""
