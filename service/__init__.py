"""The gRPC side of protoreg: compiles proto_versions/ and serves models from it.

``service`` never imports SQLAlchemy and never writes: it serves exactly what CI checked and
what clients compiled.
"""
