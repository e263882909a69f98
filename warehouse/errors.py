class WarehouseError(Exception):
    """A failure the user can act on; the command lines print its message without a traceback."""
