"""Open a study's report.html in headless Chromium: it renders, its images decode, no console errors, nothing
is fetched from the network (the page must be self-contained).

    python scripts/check_report.py study/report.html [--screenshot report.png]

Needs Debian's ``chromium`` (apt-get install chromium). Exit code 0 when the page is fine.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
# Runs in the page: the number of images that failed to decode and of resources fetched over the network,
# written into the DOM for --dump-dom to read.
PROBE = """<script>addEventListener('load', () => {
const bad = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
const remote = performance.getEntriesByType('resource')
  .filter(e => !e.name.startsWith('data:') && !e.name.startsWith('file:'));
document.body.setAttribute('data-broken-images', bad.length);
document.body.setAttribute('data-images', document.images.length);
document.body.setAttribute('data-remote', remote.length); });</script>"""
# Remote references in the page's source: src=/href= attributes and CSS url() pointing at http(s) or //host.
REMOTE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?)(?:https?:)?//""", re.IGNORECASE)


def check(report: Path, screenshot: Path | None = None) -> list[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    page = report.read_text()
    problems = [f"remote resource: {m.group(0)}..." for m in REMOTE.finditer(page)]
    with tempfile.TemporaryDirectory() as tmp:
        probe_page = Path(tmp) / "report.html"
        probe_page.write_text(page.replace("</body>", PROBE + "</body>"))
        base = [browser, *FLAGS, f"--user-data-dir={tmp}/profile"]
        dom = subprocess.run(
            [*base, "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        broken = re.search(r'data-broken-images="(\d+)"', dom.stdout)
        images = re.search(r'data-images="(\d+)"', dom.stdout)
        if not broken or not images:
            problems.append("the page did not finish loading")
        elif int(broken.group(1)):
            problems.append(f"{broken.group(1)} of {images.group(1)} images did not decode")
        remote = re.search(r'data-remote="(\d+)"', dom.stdout)
        if remote and int(remote.group(1)):
            problems.append(f"{remote.group(1)} resource(s) fetched from outside the page")
        console = [l for l in dom.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
        problems += [f"console: {l}" for l in console]
        if screenshot:
            subprocess.run(
                [*base, "--window-size=1280,2400", f"--screenshot={screenshot}", report.resolve().as_uri()],
                capture_output=True,
                timeout=120,
            )
        print(f"{report}: {images.group(1) if images else '?'} images, {len(problems)} problem(s)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    problems = check(args.report, args.screenshot)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
