"""The base models the manifest and the release policy build on."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Nested(Strict):
    """A part of a bigger model that nothing validates, constructs or dumps on its own: its
    schema is compiled inline into its parent's, and pydantic builds no validator and
    serializer of its own at import (``defer_build``: "defer model validator and serializer
    construction until the first model validation", pydantic ConfigDict). Every pipeline
    handler imports it and validates it on every call, inside the release context, so this is
    what each cold start no longer pays (bench/cold_start.py; the guard:
    tests/unit/test_cold_start_imports.py). A model that code constructs or dumps by itself
    stays a plain model, built at import."""

    model_config = ConfigDict(defer_build=True)
