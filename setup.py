"""Maps the top-level folders plugins/, lightning_modules/ and datamodules/ under the one import root `litforge`."""

from setuptools import find_packages, setup

ROOTS = {"litforge": "litforge", "plugins": "litforge.plugins", "lightning_modules": "litforge.lightning_modules",
         "datamodules": "litforge.datamodules"}

packages = []
for folder, name in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir={name: folder for folder, name in ROOTS.items()})
