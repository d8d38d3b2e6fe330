"""`selfalign push RUN_DIR REPO_ID`: upload a run's views and its dataset card to the Hub."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from selfalign import card
from selfalign.errors import EXIT_RUN_FAILED, ConfigError, InputError, SelfAlignError
from selfalign.registry import did_you_mean
from selfalign.stages.export import ViewFiles

TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

USAGE = """\
usage: selfalign push RUN_DIR REPO_ID [--private] [--views NAME[,NAME…]] [--license ID] [--dry-run]

Upload the views named in RUN_DIR/README.md (the dataset card every run writes) and the card
itself to the Hugging Face Hub dataset repo REPO_ID (created if missing), in one commit.

options:
  --private          create the repo private (an existing repo keeps its visibility)
  --views NAMES      only these views (the card's config names), comma-separated or repeated
  --license ID       the card's license field, e.g. apache-2.0, cc-by-4.0 (default: the card's)
  --dry-run          list what would be uploaded; nothing is sent
  -h, --help         this help

The token comes from HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) and is never written anywhere;
HF_ENDPOINT picks another Hub. Exit codes: 0 pushed; 2 bad run dir, view name or no token;
3 the Hub refused or could not be reached.
"""


class PushFailed(SelfAlignError):
    """The Hub refused the upload or could not be reached."""

    exit_code = EXIT_RUN_FAILED


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="selfalign push", add_help=False)
    parser.add_argument("run_dir")
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--views", action="append", default=[])
    parser.add_argument("--license")
    parser.add_argument("--dry-run", action="store_true")
    known, unknown = parser.parse_known_args(args)
    if unknown or known.repo_id.count("/") != 1:
        bad = (
            f"unknown argument '{unknown[0]}'" if unknown else f"REPO_ID '{known.repo_id}' is not OWNER/NAME"
        )
        raise ConfigError(f"push: {bad}.\n{USAGE}")
    return known


def chosen(run_dir: Path, names: list[str]) -> tuple[list[ViewFiles], str]:
    """The card's views (only `names`, when given) and the card's license."""
    path = run_dir / card.CARD
    if not path.is_file():
        raise InputError(
            f"{path}: no dataset card. Every finished run writes one; point push at a run dir "
            "(outputs/<pipeline>/<time>/), or re-run into this one to write it."
        )
    text = path.read_text(encoding="utf-8")
    views = card.views_in(text)
    license = (yaml.safe_load(text.split("---\n", 2)[1]) or {}).get("license", card.DEFAULT_LICENSE)
    wanted = [n.strip() for arg in names for n in arg.split(",") if n.strip()]
    known = [v.name for v in views]
    for name in wanted:
        if name not in known:
            raise ConfigError(
                f"push --views: no view '{name}' in {path}.{did_you_mean(name, known)} "
                f"Views: {', '.join(known) or 'none'}."
            )
    return ([v for v in views if v.name in wanted] if wanted else views), str(license)


def files(run_dir: Path, views: list[ViewFiles]) -> list[Path]:
    out = [card.data_file(run_dir, v, stem) for v in views for stem in v.splits.values()]
    if missing := [p for p in out if not p.is_file()]:
        raise InputError(f"{missing[0]}: named in the dataset card but missing. Re-run into {run_dir}.")
    return out


def token() -> str:
    for var in TOKEN_VARS:
        if os.environ.get(var):
            return os.environ[var]
    raise ConfigError(
        "push: no Hugging Face token. Set HF_TOKEN to a token with write access (created in "
        "your Hub account's settings, Access Tokens); selfalign reads it from the environment "
        "and never stores it."
    )


def upload(repo_id: str, private: bool, paths: list[Path], readme: str, message: str) -> str:
    """One commit with the files and the card; returns the commit's URL."""
    try:
        import huggingface_hub as hub
    except ImportError:
        raise ConfigError("push needs huggingface_hub: pip install 'selfalign[hf]'") from None
    api = hub.HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token())
    ops = [hub.CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in paths]
    ops.append(hub.CommitOperationAdd(path_in_repo=card.CARD, path_or_fileobj=readme.encode("utf-8")))
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.create_commit(repo_id, ops, commit_message=message, repo_type="dataset")
    except (hub.errors.HfHubHTTPError, OSError, ValueError, *_transport_errors()) as exc:
        # ValueError: the card's YAML. The message is the Hub's answer (status, reason) or the
        # connection's error; the token is never part of it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        raise PushFailed(
            f"push {repo_id}: the Hub refused or could not be reached ({endpoint}): "
            f"{first.rstrip('.')}. Check the network, HF_ENDPOINT and the token's write access, "
            "then push again."
        ) from None
    return str(info.commit_url)


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP clients' own connection errors (no network, a closed port, TLS), which are not
    OSError: httpx's in huggingface_hub 1.x, requests' before it."""
    found: list[type[Exception]] = []
    try:
        import httpx

        found.append(httpx.HTTPError)
    except ImportError:
        pass
    try:
        import requests

        found.append(requests.RequestException)
    except ImportError:
        pass
    return tuple(found)


def push_command(args: list[str]) -> int:
    if "-h" in args or "--help" in args:
        print(USAGE)
        return 0
    opts = parse(args)
    run_dir = Path(opts.run_dir).expanduser()
    views, license = chosen(run_dir, opts.views)
    if not views:
        raise InputError(f"{run_dir / card.CARD}: the card names no views; nothing to push.")
    paths = files(run_dir, views)
    readme = card.render(run_dir, views, opts.license or license)
    if opts.dry_run:
        print("\n".join([*(str(p) for p in paths), f"{card.CARD} (license: {opts.license or license})"]))
        return 0
    url = upload(
        opts.repo_id, opts.private, paths, readme, f"selfalign push: {', '.join(v.name for v in views)}"
    )
    print(f"pushed {len(paths)} file(s) and {card.CARD} to {opts.repo_id}: {url}")
    return 0
