"""Site adapters, one module per kind; found through :mod:`gridbridge.registry`."""
