from trainer.cli import entry_point

entry_point()
