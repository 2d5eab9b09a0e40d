"""Package discovery for the one distribution, ``infragym``.

The repository keeps its top-level folders (envs/, models/, datasets/, conf/) and they import as
``infragym.envs``, ``infragym.models``, ``infragym.datasets`` and ``infragym.conf``. pyproject.toml
cannot map several roots to sub-packages with automatic discovery, so this file finds every
sub-package below each root: adding a component never means listing its package by hand.
"""

from setuptools import find_namespace_packages, find_packages, setup

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
# The config groups are folders of YAML files without __init__.py: listed as (namespace)
# packages so that setuptools ships them as such instead of warning about each one; the
# user's git-ignored conf/local/ is not shipped.
config_groups = [f"infragym.conf.{sub}" for sub in find_namespace_packages("conf", exclude=["local", "local.*"])]
packages += [p for p in config_groups if p not in packages and "__pycache__" not in p]

setup(
    packages=packages,
    package_dir=ROOTS,
    # the Hydra configs travel inside the wheel: pkg://infragym.conf
    package_data={"infragym": ["py.typed"], "infragym.conf": ["*.yaml"], **{p: ["*.yaml"] for p in config_groups}},
)
