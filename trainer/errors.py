from warehouse.errors import WarehouseError


class TrainerError(WarehouseError):
    """A failure of the trainer the user can act on."""
