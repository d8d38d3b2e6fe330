"""The sub-commands behind `selfalign COMMAND`."""
