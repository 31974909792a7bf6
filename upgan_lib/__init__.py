"""upgan_lib: the library behind the UP-GAN course (Hao, Guera, Reibman, Delp, 2019).

The one place that names the course's version and where it is published: ``pyproject.toml`` reads
``__version__`` from here, the notebooks' set-up cell installs ``COURSE_REPOSITORY`` at
``COURSE_REF``, and the README's "Open in Colab" links are :func:`colab_url` (a test checks them).
"""
__version__ = "0.1.0"

#: The course's public repository (what Colab installs from and opens notebooks from).
COURSE_REPOSITORY = "https://github.com/upgan-course/upgan-course"
#: The git ref that Colab installs and opens. A branch until a release is tagged; then set it to
#: that tag (``v`` + ``__version__``) so that a notebook and the library it installs always match.
COURSE_REF = "main"


def colab_url(notebook: str) -> str:
    """"Open in Colab" address of ``notebooks/<notebook>`` at :data:`COURSE_REF`."""
    slug = COURSE_REPOSITORY.split("github.com/", 1)[1].rstrip("/")
    return f"https://colab.research.google.com/github/{slug}/blob/{COURSE_REF}/notebooks/{notebook}"


def install_source() -> str:
    """What the Colab set-up cell gives pip: the repository at :data:`COURSE_REF`."""
    return f"git+{COURSE_REPOSITORY}@{COURSE_REF}"
