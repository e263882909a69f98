class TrainerError(Exception):
    """A failure the user can act on; the CLI prints its message without a traceback."""
