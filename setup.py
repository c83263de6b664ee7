"""Maps the repository's folders into one namespace: maskworks.core <- core/, and so on.

pyproject.toml holds the metadata; this file only computes the package list, which setuptools
cannot discover on its own when folders are renamed into a namespace.
"""
from setuptools import find_packages, setup

ROOTS = {"core": "maskworks.core", "domains": "maskworks.domains", "apps": "maskworks.apps", "data": "maskworks.data"}

packages, package_dir = [], {}
for folder, name in ROOTS.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(where=folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
