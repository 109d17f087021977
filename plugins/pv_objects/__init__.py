"""pv_objects: not implemented yet; see its issue. Registers no hooks."""
