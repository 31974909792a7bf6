"""upgan_lib: the library behind the UP-GAN course (Hao, Guera, Reibman, Delp, 2019)."""
__version__ = "0.1.0"
