"""Open an HTML report in Debian's headless chromium over the DevTools protocol (aiohttp is
already a dependency, so no browser driver package is needed): console errors, what the page
shows, a screenshot. The browser test uses it, and so does the README's screenshot:

    python tests/browser.py docs/report.png      # runs wizardlm_aaa on model=test, shoots its report
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# What the page shows, read in the page: every chart's size and shapes, every figure marked with
# data-k and the row it belongs to, the theme's colours, whether the page is wider than the window.
PROBE = """(() => {
  const charts = [...document.querySelectorAll('.chart')].map(c => {
    const svg = c.querySelector('svg');
    if (!svg) return {svg: false};
    const r = svg.getBoundingClientRect(), t = svg.querySelector('text');
    return {svg: true, width: r.width, height: r.height, texts: svg.querySelectorAll('text').length,
            shapes: [...svg.querySelectorAll('path')]
              .filter(p => (p.getAttribute('d') || '').length > 20).length,
            text_fill: t ? getComputedStyle(t).fill : null};
  });
  const owner = (e, a) => { const o = e.closest('[data-' + a + ']'); return o ? o.dataset[a] : null; };
  const cells = [...document.querySelectorAll('[data-k]')].map(e => ({
    where: (e.closest('table, dl') || {}).id || null, stage: owner(e, 'stage'), model: owner(e, 'model'),
    job: owner(e, 'job'), key: e.dataset.k, text: e.textContent.trim()}));
  const reasons = [...document.querySelectorAll('[data-reason]')].map(e => ({
    stage: owner(e, 'stage'), reason: e.dataset.reason, text: e.textContent.trim()}));
  return {title: document.title, charts, cells, reasons, scripts: document.scripts.length,
          links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
          background: getComputedStyle(document.body).backgroundColor,
          too_wide: document.documentElement.scrollWidth > window.innerWidth + 1,
          text: document.body.innerText};
})()"""


def find_chromium() -> str | None:
    return os.environ.get("SELFALIGN_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


@dataclass
class Page:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    probe: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes | None = None


class _Cdp:
    """The smallest DevTools client: one websocket, numbered commands, events kept in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.ids, self.events = ws, itertools.count(1), []

    async def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_json(
            {"id": msg_id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        )
        while True:
            msg = await self.ws.receive_json(timeout=60)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout}s")
            self.events.append(await self.ws.receive_json(timeout=left))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        p, m = e.get("params", {}), e.get("method")
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif m == "Runtime.exceptionThrown":
            out.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log ({p['entry'].get('source')}): {p['entry']['text']}")
        elif m == "Page.javascriptDialogOpening":
            out.append("dialog: " + p.get("message", ""))
    return out


async def _open(port: str, path: str, url: str, dark: bool, width: int, shot: int) -> Page:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
    ):
        cdp = _Cdp(ws)
        target = (await cdp.send("Target.createTarget", url="about:blank"))["targetId"]
        sid = (await cdp.send("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            await cdp.send(f"{domain}.enable", sid)
        await cdp.send(
            "Emulation.setEmulatedMedia",
            sid,
            features=[{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}],
        )
        await cdp.send(
            "Emulation.setDeviceMetricsOverride",
            sid,
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        await cdp.send("Page.navigate", sid, url=url)
        await cdp.wait_for("Page.loadEventFired")
        result = await cdp.send("Runtime.evaluate", sid, expression=PROBE, returnByValue=True)
        page = Page(probe=result["result"].get("value", {}))
        if shot:
            page.screenshot = await _screenshot(cdp, sid, width, shot)
        await asyncio.sleep(0.2)  # console messages of the last moment arrive as events
        await cdp.send("Runtime.evaluate", sid, expression="1")
        page.errors = _errors(cdp.events)
        await cdp.send("Target.closeTarget", targetId=target)
        return page


async def _screenshot(cdp: _Cdp, sid: str, width: int, height: int) -> bytes:
    if height < 0:  # the whole page
        height = int((await cdp.send("Page.getLayoutMetrics", sid))["cssContentSize"]["height"])
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    data = await cdp.send("Page.captureScreenshot", sid, format="png", clip=clip, captureBeyondViewport=True)
    return base64.b64decode(data["data"])


class Browser:
    """A headless chromium for several pages: `with Browser() as b: b.open(path)`."""

    def __init__(self) -> None:
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium not found (apt-get install chromium)")
        self.exe = exe

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self._log = open(Path(self._profile.name) / "chromium.log", "wb")  # noqa: SIM115
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                f"--user-data-dir={self._profile.name}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,  # a file, not a pipe: an unread pipe would fill and stall chromium
        )
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (Path(self._profile.name) / "chromium.log").read_text(errors="replace")[-2000:]
                self.__exit__()
                raise RuntimeError(f"chromium did not start: {log}")
            time.sleep(0.1)
        self.port, self.path = port_file.read_text().split()[:2]
        return self

    def __exit__(self, *_: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        self._profile.cleanup()

    def open(self, html: Path, dark: bool = False, width: int = 1280, shot: int = 0) -> Page:
        """Load `html` from disk and return what the page did and showed; with `shot`, a
        screenshot of its top `shot` pixels (-1: all of it)."""
        return asyncio.run(_open(self.port, self.path, html.resolve().as_uri(), dark, width, shot))


def open_page(html: Path, dark: bool = False, width: int = 1280, shot: int = 0) -> Page:
    """Load `html` in a fresh headless chromium (see Browser.open)."""
    with Browser() as browser:
        return browser.open(html, dark, width, shot)


def main(argv: list[str]) -> int:
    """Run wizardlm_aaa on the test model into a temporary dir and save its report's screenshot."""
    out = Path(argv[0] if argv else "docs/report.png")
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from selfalign import api

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SELFALIGN_CACHE"] = str(Path(tmp) / "cache.sqlite")  # a demo: leave yours be
        run_dir = Path(tmp) / "wizardlm_aaa"
        api.run(["pipeline=wizardlm_aaa", "model=test"], run_dir)
        page = open_page(run_dir / "report.html", shot=1400)
    if page.errors:
        print("\n".join(page.errors), file=sys.stderr)
        return 1
    assert page.screenshot is not None
    out.write_bytes(page.screenshot)
    print(f"{out}: {len(page.screenshot)} bytes, {len(page.probe['charts'])} charts")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
