"""The sub-commands behind `selfalign COMMAND`, and the argv helpers they share."""

from __future__ import annotations

from selfalign.errors import ConfigError


def split_config_dirs(args: list[str]) -> tuple[list[str], list[str]]:
    """Pull `--config-dir DIR` / `-cd DIR` / `--config-dir=DIR` out of args: (dirs, the rest).
    Hydra's own flag, accepted by every command so one command line works for all of them."""
    dirs: list[str] = []
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a in ("--config-dir", "-cd"):
            flag, value = a, next(it, "")
        elif a.startswith("--config-dir="):
            flag, value = "--config-dir", a.split("=", 1)[1]
        else:
            rest.append(a)
            continue
        if not value or value.startswith("-"):
            # without this check a missing DIR would silently mean the current folder
            raise ConfigError(f"{flag}: missing folder. Write `{flag} DIR`, e.g. `{flag} ./myconf`.")
        dirs.append(value)
    return dirs, rest


def reject_flags(command: str, args: list[str]) -> None:
    """Commands other than `run` take only overrides: name a stray flag here, rather than let
    Hydra's override parser fail on it with a lexer error."""
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise ConfigError(
            f"{command}: unknown option '{flags[0]}'. Overrides are written "
            f"key=value; see `selfalign {command} --help`."
        )
