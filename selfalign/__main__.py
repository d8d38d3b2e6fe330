"""`python -m selfalign` = the `selfalign` command."""

from selfalign.cli import entry

entry()
