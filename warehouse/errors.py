class WarehouseError(Exception):
    """A failure the user can act on; the command lines print its message without a traceback."""


class WarehouseChanged(WarehouseError):
    """Another process changed the warehouse after a writer read it: the writer's new version would lose
    that change, so it is not swapped in."""
