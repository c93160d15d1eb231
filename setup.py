# Everything is in setup.cfg. This file lets pip 22.0.2 with setuptools 59.6.0 (the PYNQ board images) make
# an editable install (`setup.py develop`): that setuptools predates PEP 660.
from setuptools import setup

setup()
