"""moto's response serializer, with its per-attribute alias search done once per shape.

moto 5.2.1 serialises every response by walking the operation's output shape and, for each
structure member of each value, asking an ``XFormedAttributePicker`` which attribute of the
Python object holds it: six alias providers are instantiated and consulted, ``xform_name``
runs, and a context object and a dotted key path are built, per member per value. A
DynamoDB item is a tree of ``AttributeValue`` structures (ten members each), so reading a
9 KB ledger record costs ~2,500 such searches, about 55 ms of CPU; an observer polling the
ledger every 20 ms then keeps a core busy.

The candidate keys a member can be found under depend only on the object's class (its
name, a class-level ``Meta.serialization_aliases``), the member's name and its shape (with
the structure it belongs to). :func:`cached_alias_search` computes them with moto's own
providers the first time a (class, member, shape) is seen and reuses them; the value is
then looked up under those keys in moto's order, and moto's response transformers are
applied exactly as before. Objects whose keys could vary per instance (an instance-level
``Meta``, a class with ``__getattr__``) and pickers other than moto's default take moto's
own path. The responses are byte-for-byte what moto produces
(``tests/unit/local/test_serializer_speed.py`` compares them).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

_MAX_ENTRIES = 50_000  # shapes come from cached service models; a bound against a model built per call
_cache: dict[tuple[Any, ...], tuple[str, ...]] = {}
_cache_lock = threading.Lock()


def _keys_are_per_class(obj: Any) -> bool:
    """True when moto's alias search for ``obj`` depends on its class alone."""
    cls = type(obj)
    if obj.__class__ is not cls or getattr(cls, "__getattr__", None) is not None:
        return False
    instance_dict = getattr(obj, "__dict__", None)
    return not (instance_dict is not None and "Meta" in instance_dict)


@contextlib.contextmanager
def cached_alias_search() -> Iterator[None]:
    """While active, ``ResponseSerializer.get_value`` reuses each (class, member, shape)'s
    alias search (see the module docstring)."""
    from moto.core import serialize as moto_serialize

    original = moto_serialize.ResponseSerializer.get_value
    picker_class = moto_serialize.XFormedAttributePicker
    default_providers = moto_serialize.DEFAULT_ALIAS_PROVIDERS
    context_class = moto_serialize.AttributePickerContext
    lookup = moto_serialize.get_value
    missing = moto_serialize.MISSING

    @functools.wraps(original)
    def get_value(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        plain = type(value) is dict
        if type(picker) is not picker_class or picker.alias_providers is not default_providers \
                or not (plain or _keys_are_per_class(value)):
            return original(self, value, key, shape)
        cache_key = (type(value), key, shape, getattr(shape, "parent", None))
        keys = _cache.get(cache_key)
        if keys is None:
            context = context_class(obj=value, key=key, shape=shape, operation_model=self.operation_model,
                                    service_model=self.operation_model.service_model)
            keys = tuple(picker.get_possible_keys(context))
            with _cache_lock:
                if len(_cache) >= _MAX_ENTRIES:
                    _cache.clear()
                _cache[cache_key] = keys
        for possible_key in keys:
            # moto's get_value on a dict is dict[key] (a dotted key walks a path: moto's own lookup)
            found = value.get(possible_key, missing) if plain and "." not in possible_key \
                else lookup(value, possible_key, missing)
            if found is not missing:
                break
        else:
            found = None
        if picker.response_transformers:
            key_path = f"{'.'.join(self.path)}.{key}"
            for transform_path, transform in picker.response_transformers.items():
                if key_path.endswith(transform_path):
                    return transform(found)
        return found

    with mock.patch.object(moto_serialize.ResponseSerializer, "get_value", get_value):
        yield
