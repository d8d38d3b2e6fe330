"""One redaction for everything selfalign writes or prints: config.yaml, .hydra/, manifest.json,
logs, report.html, the dataset card, sweep summaries, estimate.json and error messages.

Two rules, both replace with `***`:
- a value under a key-like name (api_key, token, authorization, secret, password, cookie …,
  case-insensitive, at any depth, headers included), and `api_key_env` when it holds a key
  rather than a variable name;
- a key-shaped string anywhere (sk-…, hf_…, ghp_…, AKIA…, xox…-, Bearer …, JWTs, long mixed-case
  alphanumeric tokens), URL userinfo (https://user:tok@host) and key-like URL query params.
Hex digests (prompt sha256s), run ids, paths and ordinary text are left alone: a token must
mix upper case, lower case and digits to count as a key. Only what is written or printed is
redacted; requests still carry the real key."""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# a name is secret when its last word is one of these (`max_tokens`, `api_key_env` are not)
_SECRET_WORD = (
    r"api[_-]?key|apikey|x[_-]api[_-]key|access[_-]?key|secret[_-]?key|private[_-]?key|token|"
    r"access[_-]?token|refresh[_-]?token|auth|authorization|secret|client[_-]?secret|password|"
    r"passwd|pwd|credentials?|cookie|set[_-]cookie|session[_-]?id"
)
_SECRET_NAME = re.compile(rf"^(?:.*[._-])?(?:{_SECRET_WORD})$", re.I)
# `name=value`, `name: value`, `"name": "value"` in flat text (overrides, reprs, messages)
_NAMED = re.compile(
    rf"(?i)(?<![\w-])((?:[\w.-]*[._-])?(?:{_SECRET_WORD})[\"']?\s*[:=]\s*[\"']?)"
    r"((?:bearer|basic|token)\s+)?[^\s,;&'\"}\]]+"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY = re.compile(r"(?i)([?&](?:key|sig|signature|code)=)[^&#\s'\"]+")
_SHAPED = [
    re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{8,}"),  # OpenAI, Anthropic (sk-ant-), sk-proj-
    re.compile(r"(?<![\w-])(?:hf|gh[pousr]|github_pat|glpat|npm|pypi)[-_][A-Za-z0-9_-]{16,}"),
    re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),  # AWS key ids
    re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{8,}"),  # Slack
    re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{30,}"),  # Google
    re.compile(r"(?<![\w-])eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"),  # JWT
]
_BEARER = re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}")
_LONG = re.compile(r"(?<![\w/+.=-])[A-Za-z0-9]{32,}(?![\w/+.=-])")


def looks_like_secret(value: str) -> bool:
    """For a field that must hold an env var NAME (api_key_env): a name is short and
    [A-Za-z0-9_]; a key has dashes, is long, or starts sk-."""
    return (
        value.startswith(("sk-", "sk_", "key-"))
        or not _ENV_NAME.match(value)
        or (len(value) >= 32 and any(c.isdigit() for c in value) and any(c.islower() for c in value))
    )


def is_secret_name(name: object) -> bool:
    return isinstance(name, str) and bool(_SECRET_NAME.match(name.strip()))


def _long_token(m: re.Match[str]) -> str:
    s = m.group(0)
    mixed = any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)
    return MASK if mixed else s  # lowercase hex digests and plain words stay


def redact_text(text: str) -> str:
    """Key-shaped strings, URL userinfo, and values after key-like names → ***."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _QUERY.sub(rf"\1{MASK}", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    for pattern in _SHAPED:
        text = pattern.sub(MASK, text)
    text = _NAMED.sub(lambda m: m.group(1) + (m.group(2) or "") + MASK, text)
    return _LONG.sub(_long_token, text)


def redact(obj: Any, key: object = None) -> Any:
    """A copy of plain data (dicts, lists, strings) with every secret replaced by ***."""
    if isinstance(obj, dict):
        return {k: redact(v, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    if is_secret_name(key) and obj is not None and obj != "":
        return MASK
    if isinstance(obj, str):
        if isinstance(key, str) and key.endswith("_env") and obj and looks_like_secret(obj):
            return MASK  # api_key_env given the key itself
        return redact_text(obj)
    return obj


def redact_config(cfg: Any, resolve: bool = True) -> Any:
    """A DictConfig as plain data, redacted: for config.yaml and printed configs."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        cfg = OmegaConf.to_container(cfg, resolve=resolve)
    return redact(cfg)


def config_yaml(cfg: Any, resolve: bool = True) -> str:
    """The YAML of a config with its secrets redacted."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(redact_config(cfg, resolve)))


def redact_yaml_file(path: Any) -> None:
    """Rewrite a YAML file (Hydra's .hydra/*.yaml, multirun.yaml) with its secrets redacted.
    Unresolved: Hydra's own files keep their interpolations."""
    import os
    from pathlib import Path

    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        return
    data = redact(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # a parallel sweep's jobs race here
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(data)), encoding="utf-8")
    os.replace(tmp, path)


class LogFilter(logging.Filter):
    """Redacts every record a handler emits (run.log, the console; Hydra's launcher lines).
    Named in conf/hydra/*_logging/*.yaml as `(): selfalign.redact.LogFilter`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a bad format: let logging report it as usual
            return True
        record.msg, record.args = redact_text(message), None
        return True


class RedactedStream:
    """A text stream that redacts what is written to it: for output that Hydra prints itself
    (`--cfg job`, `--info`), which no logging filter sees. Whole lines come in one write."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding … of the real stream
        return getattr(self._stream, name)
