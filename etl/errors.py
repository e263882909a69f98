from warehouse.errors import WarehouseError


class EtlError(WarehouseError):
    """A failure of the ETL the user can act on."""
