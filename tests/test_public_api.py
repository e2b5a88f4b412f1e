"""The public surface: one sorted, complete __all__, the version, the type marker."""

from __future__ import annotations

import configparser
import enum
import importlib
import importlib.metadata
import inspect
import re
import typing
from pathlib import Path

import pytest
from setuptools.config.setupcfg import read_configuration

import crossmint_wsgi

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(crossmint_wsgi.__file__).resolve().parent

#: Modules whose whole ``__all__`` is the user's API and must be re-exported.
PUBLIC_MODULES = [
    "crossmint_wsgi.config",
    "crossmint_wsgi.errors",
    "crossmint_wsgi.models",
    "crossmint_wsgi.auth",
    "crossmint_wsgi.wsgi",
    "crossmint_wsgi.asgi",
]

#: Names from other modules that users need at the top level.
ALSO_PUBLIC = {
    "crossmint_wsgi.coordination": {
        "AsyncLocalCoordinator",
        "AsyncRefreshCoordinator",
        "LocalCoordinator",
        "RefreshCoordinator",
    },
    "crossmint_wsgi.answers": {"Answer"},
}

#: In a public module's __all__ but deliberately importable from that module only.
MODULE_ONLY = {
    # A typing alias for ASGI callables, not part of what users build with.
    ("crossmint_wsgi.asgi", "ASGIApp"),
    # For framework integrations reading the raw header, as the middleware does.
    ("crossmint_wsgi.asgi", "cookie_header"),
}

#: Modules with optional dependencies or a narrow audience: imported by path, never re-exported.
BY_PATH_ONLY = [
    "crossmint_wsgi.contrib.django_conf",
    "crossmint_wsgi.gunicorn",
    "crossmint_wsgi.gunicorn_settings",
    "crossmint_wsgi.redis",
    "crossmint_wsgi.testing",
]

#: One module per framework, each with that framework's idioms (its own ``require_session``):
#: imported by path, never re-exported, and importing the package imports none of them.
CONTRIB = [
    "crossmint_wsgi.contrib.django",
    "crossmint_wsgi.contrib.fastapi",
    "crossmint_wsgi.contrib.quart",
    "crossmint_wsgi.contrib.starlette",
]


def test_all_is_sorted_and_unique() -> None:
    names = list(crossmint_wsgi.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from crossmint_wsgi import *", namespace)
    for name in crossmint_wsgi.__all__:
        assert name in namespace, name
        assert getattr(crossmint_wsgi, name) is namespace[name]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_modules_are_fully_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = {
        name
        for name in module.__all__
        if name not in crossmint_wsgi.__all__ and (module_name, name) not in MODULE_ONLY
    }
    assert not missing, f"{module_name} defines public names not in crossmint_wsgi.__all__"
    for name in module.__all__:
        if name in crossmint_wsgi.__all__:
            assert getattr(crossmint_wsgi, name) is getattr(module, name)


@pytest.mark.parametrize(("module_name", "names"), sorted(ALSO_PUBLIC.items()))
def test_other_public_names_are_exported(module_name: str, names: set[str]) -> None:
    module = importlib.import_module(module_name)
    for name in names:
        assert name in module.__all__
        assert name in crossmint_wsgi.__all__
        assert getattr(crossmint_wsgi, name) is getattr(module, name)


def test_nothing_else_is_exported() -> None:
    expected = {"__version__"}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        expected |= {n for n in module.__all__ if (module_name, n) not in MODULE_ONLY}
    for names in ALSO_PUBLIC.values():
        expected |= names
    assert set(crossmint_wsgi.__all__) == expected


def test_every_module_all_names_exist() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        module = importlib.import_module(f"crossmint_wsgi.{path.stem}")
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name!r}"


def test_exported_objects_are_defined_in_the_package() -> None:
    for name in crossmint_wsgi.__all__:
        value = getattr(crossmint_wsgi, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("crossmint_wsgi."), name


def test_exported_classes_and_functions_are_documented() -> None:
    for name in crossmint_wsgi.__all__:
        value = getattr(crossmint_wsgi, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_error_codes_and_enums_are_str_enums() -> None:
    for name in ("ErrorCode", "Environment", "UsageOrigin"):
        value = getattr(crossmint_wsgi, name)
        assert issubclass(value, enum.Enum)
        assert issubclass(value, str)


def test_protocols_are_runtime_checkable() -> None:
    for name in ("RefreshCoordinator", "AsyncRefreshCoordinator"):
        protocol = getattr(crossmint_wsgi, name)
        assert getattr(protocol, "_is_protocol", False)
        assert getattr(protocol, "_is_runtime_protocol", False)
    assert isinstance(crossmint_wsgi.LocalCoordinator(), crossmint_wsgi.RefreshCoordinator)
    assert isinstance(
        crossmint_wsgi.AsyncLocalCoordinator(), crossmint_wsgi.AsyncRefreshCoordinator
    )


@pytest.mark.parametrize("module_name", BY_PATH_ONLY)
def test_optional_modules_import_by_path(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in getattr(module, "__all__", ()):
        assert name not in crossmint_wsgi.__all__


@pytest.mark.parametrize("module_name", CONTRIB)
def test_contrib_modules_are_not_re_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name)
        if hasattr(crossmint_wsgi, name):
            # Same name, its own framework's object (contrib.django.require_session).
            assert getattr(crossmint_wsgi, name) is not getattr(module, name)


# -- version and packaging -----------------------------------------------------------------


def test_version_comes_from_the_package() -> None:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    assert parser["metadata"]["version"].strip() == "attr: crossmint_wsgi.__version__"
    assert read_configuration(ROOT / "setup.cfg")["metadata"]["version"] == (
        crossmint_wsgi.__version__
    )
    # PEP 440, public version.
    assert re.fullmatch(
        r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", crossmint_wsgi.__version__
    )


def test_installed_metadata_matches_the_version() -> None:
    installed = importlib.metadata.version("crossmint-wsgi")
    assert installed == crossmint_wsgi.__version__, (
        "the installed metadata is stale: reinstall the package (tools/test.sh does)"
    )


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").is_file()
    package_data = read_configuration(ROOT / "setup.cfg")["options"]["package_data"]
    assert "py.typed" in package_data["crossmint_wsgi"]


def test_public_signatures_are_annotated() -> None:
    for name in ("create_crossmint", "get_session", "require_session"):
        hints = typing.get_type_hints(getattr(crossmint_wsgi, name))
        assert "return" in hints, name
