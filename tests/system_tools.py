"""The Debian tools some tests drive (scripts/system-packages.sh installs them): a missing one fails the test with the
package to install, it is never skipped."""

from __future__ import annotations

import shutil


def command(*names: str, package: str) -> str:
    """The path of the first of the commands `names` installed; fails naming the Debian `package` that provides it."""
    path = next(filter(None, map(shutil.which, names)), None)
    assert path, f"{' or '.join(names)} not found: install the Debian package {package} (scripts/system-packages.sh does)"
    return path


def chromium() -> str:
    """Headless Chromium for the rendering tests (Debian's `chromium`, Ubuntu's `chromium-browser`)."""
    return command("chromium", "chromium-browser", package="chromium")
