"""Package discovery for the one distribution, ``infragym``.

The repository keeps its top-level folders (envs/, models/, datasets/, conf/) and they import as
``infragym.envs``, ``infragym.models``, ``infragym.datasets`` and ``infragym.conf``. pyproject.toml
cannot map several roots to sub-packages with automatic discovery, so this file finds every
sub-package below each root: adding a component never means listing its package by hand.
"""

from setuptools import find_packages, setup

# import name -> folder in the repository
ROOTS = {
    "infragym": "infragym",
    "infragym.envs": "envs",
    "infragym.models": "models",
    "infragym.datasets": "datasets",
    "infragym.conf": "conf",
}

packages: list[str] = []
for package, folder in ROOTS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=ROOTS,
    # the Hydra configs travel inside the wheel: pkg://infragym.conf
    package_data={"infragym": ["py.typed"], "infragym.conf": ["*.yaml", "**/*.yaml"]},
    exclude_package_data={"infragym.conf": ["local/*"]},
)
