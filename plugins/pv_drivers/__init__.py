"""pv_drivers: not implemented yet; see its issue. Registers no hooks."""
