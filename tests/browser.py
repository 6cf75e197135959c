"""Reports opened in headless Chromium, as a user opens them: what a page must never do.

`problems(driver, path)` loads one report and lists what is wrong with it: a console message of
level warning or worse, an image that does not decode, a request for anything but the file itself
and its inline data, and a page wider than the window (a user would scroll sideways; a wide table
must scroll inside its own box). The window is 800 px wide, a laptop's half screen.

The browser is Debian's `chromium` with its `chromium-driver` (`.ci/run` installs both when
missing), driven by Selenium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

WIDTH, HEIGHT = 800, 900
"""the window, in CSS pixels"""
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
"""the browser's command names, the first found is used"""
MISSING = "no Chromium and ChromeDriver on this machine (.ci/run installs Debian's chromium and chromium-driver; apt-get install chromium chromium-driver)"
"""why the browser tests are skipped where they are"""

PAGE_FACTS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
Promise.all(images.map(i => i.decode().then(() => i.naturalWidth > 0 ? null : i.src.slice(0, 80), () => i.src.slice(0, 80)))).then(bad => done({
  images: images.length,
  broken: bad.filter(x => x),
  scroll_width: document.documentElement.scrollWidth,
  client_width: document.documentElement.clientWidth,
  text: document.body.textContent,
  injected: document.querySelector('.injected') !== null || window.injected !== undefined,
}));
"""
"""the facts read in the page: its images (each decoded), its widths, its text, and whether a
crafted string became markup (an element of class `injected`, or a script that ran)"""


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    binary = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def start(binary: str, driver: str):
    """A headless Chromium at WIDTH × HEIGHT that records its console and network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def visit(driver, path: Path | str) -> dict:
    """Load the page at `path` and return PAGE_FACTS with its console messages and requests."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what an earlier page left
    driver.get(Path(path).resolve().as_uri())
    facts = driver.execute_async_script(PAGE_FACTS)
    facts["console"] = [f"{e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] in ("WARNING", "SEVERE")]
    events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    facts["requests"] = [m["params"]["request"]["url"] for m in events if m["method"] == "Network.requestWillBeSent"]
    return facts


def problems(driver, path: Path | str) -> list[str]:
    """Everything wrong with the page at `path`; [] for a good report."""
    page = Path(path).resolve().as_uri()
    facts = visit(driver, path)
    found = [f"console {line}" for line in facts["console"]]
    found += [f"image does not decode: {src}" for src in facts["broken"]]
    found += [f"requested {url[:80]}" for url in facts["requests"] if url != page and not url.startswith("data:")]
    if facts["scroll_width"] > facts["client_width"]:
        found.append(f"scrolls sideways: {facts['scroll_width']} px wide in a {facts['client_width']} px window")
    if facts["injected"]:
        found.append("a crafted string became markup")
    return found
