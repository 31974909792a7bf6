"""Root pytest configuration, shared by tests/ and the nbval run over notebooks/."""
import os
import tempfile


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
    # notebooks and tests write into a throwaway cache unless UPGAN_CACHE is set (CI sets it
    # so that prepared sets are reused between tests and notebooks)
    if not os.environ.get("UPGAN_CACHE"):
        os.environ["UPGAN_CACHE"] = tempfile.mkdtemp(prefix="upgan-cache-")
