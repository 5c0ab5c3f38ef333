"""protoreg: typed, versioned protobuf APIs for machine-learning models.

The ``registry`` package owns everything that turns a model's pydantic schema into numbered,
rendered, checked protobuf packages. It never serves traffic; see ``service`` for that.
"""

__version__ = "0.1.0"
