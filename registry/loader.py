"""Finding models: MODEL_REF strings, the ``protoreg.models`` entry points, and the model protocol.

protoreg does not depend on any model base class. A model is anything with the attributes of
the MLModel interface (``ml-base``): ``qualified_name``, ``display_name``, ``description``,
``version``, ``input_schema``, ``output_schema`` and ``predict``. Metadata is read from the class
when the class declares plain attributes, so registering or checking a model never loads its
weights; a class that only offers abstract-style properties is instantiated as a fallback.

A model may also define ``predict_batch(inputs: list[Input]) -> list[Output]`` (same order, same
length), which the server calls once for many concurrent requests. When present it must be
callable, and its annotations, where given, must name the model's own input and output schemas.
A model class must be one ``protoreg serve`` can create without arguments: one that leaves an
abstract method (``ml-base``'s abstract ``__init__``) or needs constructor arguments is refused
here, so ``check`` and ``register`` say so instead of ``serve`` finding out.

A ``module:Class`` ref is imported with the current directory on ``sys.path`` (as uvicorn and
pytest do), so a model next to the project needs no ``PYTHONPATH``. protoreg's own code is
imported as ``protoreg.*``, so a project's ``service`` or ``registry`` package cannot shadow it.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import os
import re
import sys
import typing
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from .errors import ModelLoadError, UsageError

ENTRY_POINT_GROUP = "protoreg.models"
METADATA_ATTRIBUTES = (
    "qualified_name",
    "display_name",
    "description",
    "version",
    "input_schema",
    "output_schema",
)


@runtime_checkable
class ModelLike(Protocol):
    """What protoreg needs of a model: the MLModel interface, structurally."""

    qualified_name: str
    display_name: str
    description: str
    version: str
    input_schema: type[BaseModel]
    output_schema: type[BaseModel]

    def predict(self, data: BaseModel) -> BaseModel: ...


@dataclass(frozen=True)
class ModelMetadata:
    qualified_name: str
    display_name: str
    description: str
    version: str
    input_schema: Any
    output_schema: Any


def model_metadata(model: Any) -> ModelMetadata:
    """Read the metadata of a model class or instance, instantiating only when it must."""
    values = _read_attributes(model)
    if any(not _is_plain(v) for v in values.values()) and isinstance(model, type):
        try:
            instance = model()
        except Exception as error:  # the model's own constructor: report, do not crash
            raise ModelLoadError(
                f'Model class "{_ref_name(model)}" declares its metadata as properties and could '
                f"not be instantiated to read them ({type(error).__name__}: {error}); declare "
                "qualified_name, version, input_schema and output_schema as class attributes"
            ) from error
        values = _read_attributes(instance)
    missing = [k for k, v in values.items() if not _is_plain(v)]
    if missing:
        raise ModelLoadError(
            f'"{_ref_name(model)}" is not a model: it lacks {", ".join(missing)}; a model needs '
            f"{', '.join(METADATA_ATTRIBUTES)} and predict()"
        )
    for key in ("qualified_name", "display_name", "description", "version"):
        if not isinstance(values[key], str):
            raise ModelLoadError(
                f'"{_ref_name(model)}".{key} must be a string, not {type(values[key]).__name__}'
            )
    meta = ModelMetadata(**values)
    problem = batch_problem(model, meta)
    if problem:
        raise ModelLoadError(f'"{_ref_name(model)}".predict_batch {problem}')
    problem = instantiation_problem(model)
    if problem:
        raise ModelLoadError(f'Model class "{_ref_name(model)}" {problem}')
    return meta


def instantiation_problem(model: Any) -> str | None:
    """Why ``protoreg serve`` could not create ``model()`` (None for an instance, or a class it can).

    Read from the class alone: creating it would load the model's weights.
    """
    if not isinstance(model, type):
        return None
    abstract = sorted(getattr(model, "__abstractmethods__", ()))
    if abstract:
        owners = {
            name: next((f"{c.__module__}.{c.__qualname__}" for c in model.__mro__
                        if getattr(c.__dict__.get(name), "__isabstractmethod__", False)), "a base class")
            for name in abstract
        }
        listed = ", ".join(f"{name} (abstract in {owner})" for name, owner in owners.items())
        return (f"cannot be instantiated, so protoreg serve could not create it: it does not define {listed}; "
                "define them in the class (for ml-base's MLModel, an __init__ that loads the model)")
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):  # a builtin or C-level constructor: nothing to read
        return None
    required = [p.name for p in signature.parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if required:
        return (f"cannot be created without arguments ({', '.join(required)}), and protoreg serve creates it "
                "as Class(); give them defaults, or read them from the environment or a file in __init__")
    return None


_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)


def _element(annotation: Any) -> Any:
    """``X`` of ``list[X]``/``Sequence[X]``/``Iterable[X]``; ``None`` for anything else."""
    if typing.get_origin(annotation) in _SEQUENCES:
        args = typing.get_args(annotation)
        return args[0] if len(args) == 1 else None
    return None


def batch_problem(model: Any, meta: ModelMetadata) -> str | None:
    """What is wrong with the model's ``predict_batch`` (None when it has none, or it is fine)."""
    batch = getattr(model, "predict_batch", None)
    if batch is None:
        return None
    if not callable(batch):
        return (f"is not callable (it is {type(batch).__name__} {batch!r:.40}); define it as "
                "def predict_batch(self, inputs) -> list")
    try:
        hints = typing.get_type_hints(batch)
        parameters = [p for p in inspect.signature(batch).parameters.values() if p.name != "self"]
    except (NameError, TypeError, ValueError) as error:
        return f"has annotations that cannot be resolved ({error})"
    inputs, outputs = meta.input_schema.__name__, meta.output_schema.__name__
    if not parameters:
        return f"takes no inputs; it must take one list of {inputs}"
    given = hints.get(parameters[0].name)
    if given is not None and given is not Any:
        element = _element(given)
        if element is not Any and not (isinstance(element, type) and issubclass(meta.input_schema, element)):
            return (f"takes {_show(given)} but the model's input schema is {inputs}; "
                    f"annotate it list[{inputs}]")
    returned = hints.get("return")
    if returned is not None and returned is not Any:
        element = _element(returned)
        if element is not Any and not (isinstance(element, type) and issubclass(element, meta.output_schema)):
            return (f"returns {_show(returned)} but the model's output schema is {outputs}; "
                    f"annotate it list[{outputs}]")
    return None


def _show(annotation: Any) -> str:
    """``list[IrisInput]`` rather than ``list[iris_model.model.IrisInput]``."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", str(annotation))


def _read_attributes(obj: Any) -> dict[str, Any]:
    return {key: getattr(obj, key, None) for key in METADATA_ATTRIBUTES}


def _is_plain(value: Any) -> bool:
    return value is not None and not isinstance(value, property)


def _ref_name(model: Any) -> str:
    cls = model if isinstance(model, type) else type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def entry_point_models() -> dict[str, Any]:
    """Every installed ``protoreg.models`` entry point, by name (not yet loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_model(ref: str) -> Any:
    """Resolve a MODEL_REF (``module:Class`` or an entry-point name) to a model class."""
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        _import_from_current_directory()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ModelLoadError(
                f'Cannot import module "{module_name}" for model "{ref}" ({error}); '
                "install the model's package or check the spelling"
            ) from error
        except (Exception, SystemExit) as error:  # the model's own module: report, do not crash
            raise ModelLoadError(
                f'Importing module "{module_name}" for model "{ref}" failed: {_import_failure(error)}; '
                "fix the module, then run the command again"
            ) from error
        target: Any = module
        for part in attr.split("."):
            if not hasattr(target, part):
                raise ModelLoadError(f'Module "{module_name}" has no attribute "{attr}" (model "{ref}")')
            target = getattr(target, part)
        model_metadata(target)
        return target
    available = entry_point_models()
    if ref not in available:
        known = ", ".join(sorted(available)) or "none installed"
        raise ModelLoadError(
            f'No model named "{ref}" in the {ENTRY_POINT_GROUP} entry points (known: {known}); '
            "use module:Class or install the model's package"
        )
    try:
        target = available[ref].load()
    except Exception as error:
        raise ModelLoadError(f'Entry point "{ref}" failed to load: {type(error).__name__}: {error}') from error
    model_metadata(target)
    return target


def _import_failure(error: BaseException) -> str:
    """An exception raised while importing a model's module, as part of one sentence."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    text = " ".join(str(error).split())
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    at = f" ({frame.tb_frame.f_code.co_filename}, line {frame.tb_lineno})" if frame is not None else ""
    return f"{type(error).__name__}: {text[:300]}{at}" if text else f"{type(error).__name__}{at}"


def _import_from_current_directory() -> None:
    """Put the current directory first on ``sys.path`` for ``module:Class`` refs, as uvicorn does."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
        importlib.invalidate_caches()


def model_refs(refs: tuple[str, ...] | list[str], all_models: bool = False) -> list[str]:
    """The MODEL_REFs a command names: ``refs``, then (with ``all_models``) every entry-point model.

    Refuses naming none, and ``--all`` finding none: a command that silently did nothing would
    look like success in CI.
    """
    if not refs and not all_models:
        raise UsageError("name at least one MODEL_REF (module:Class or an entry-point name), or pass --all")
    names = list(refs)
    if all_models:
        names += [n for n in sorted(entry_point_models()) if n not in names]
    if not names:
        raise UsageError("--all found no installed models in the protoreg.models entry points; install one")
    return names


def load_models(refs: tuple[str, ...] | list[str], all_models: bool = False) -> list[Any]:
    """Resolve the MODEL_REFs of :func:`model_refs` to model classes."""
    return [load_model(name) for name in model_refs(refs, all_models)]
