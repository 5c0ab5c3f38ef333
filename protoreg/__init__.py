"""protoreg: typed, versioned protobuf APIs for machine-learning models.

``registry`` turns a model's pydantic schema into numbered, rendered, checked protobuf packages;
``service`` serves them over gRPC; ``migrations`` owns the registry's database schema. This
package is the application on top: the ``protoreg`` command (``protoreg.cli``), which wires the
commands of both.
"""
