"""Resolved features of messages and enums, as the descriptor reader sees them.

The reader resolves ``enum_type`` and ``json_format`` itself, from protobuf's declaration of the
features' edition defaults. The oracle here is protobuf's Python runtime, which resolves the same
features when it builds descriptors (``is_closed``, and the private ``_GetFeatures()``): every
message and enum of files in proto2, proto3, edition 2023 and edition 2024, with overrides on
files, messages, nested messages and enums, must resolve alike in both.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

from protoreg.registry.compat.descriptors import edition_defaults, file_to_package
from protoreg.registry.protoc import compile_descriptor_set

FILES = {
    "p2.proto": """
        syntax = "proto2";
        package f.p2;
        message M { optional string s = 1; enum E { E_ZERO = 0; } message N { enum F { F_ZERO = 0; } } }
        enum G { G_ZERO = 0; }
    """,
    "p3.proto": """
        syntax = "proto3";
        package f.p3;
        message M { string s = 1; enum E { E_ZERO = 0; } message N { enum F { F_ZERO = 0; } } }
        enum G { G_ZERO = 0; }
    """,
    "e2023.proto": """
        edition = "2023";
        package f.e2023;
        option features.json_format = LEGACY_BEST_EFFORT;
        option features.enum_type = CLOSED;
        message Plain { string s = 1; enum E { E_ZERO = 0; } }
        message Allow {
          option features.json_format = ALLOW;
          message Inherits { enum F { F_ZERO = 0; } }
          message Again { option features.json_format = LEGACY_BEST_EFFORT; }
          enum Open { option features.enum_type = OPEN; O_ZERO = 0; }
        }
        enum G { G_ZERO = 0; }
        enum H { option features.json_format = ALLOW; option features.enum_type = OPEN; H_ZERO = 0; }
    """,
    "e2024.proto": """
        edition = "2024";
        package f.e2024;
        message Plain { string s = 1; enum Kind { KIND_ZERO = 0; } }
        message Legacy {
          option features.json_format = LEGACY_BEST_EFFORT;
          message Inner { enum Closed { option features.enum_type = CLOSED; CLOSED_ZERO = 0; } }
        }
    """,
}


def _compile(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    for name, text in FILES.items():
        (tmp_path / name).write_text("\n".join(line.strip() for line in text.splitlines()), encoding="utf-8")
    return compile_descriptor_set(tmp_path)


def test_resolved_features_match_protobufs_runtime(tmp_path: Path) -> None:
    descriptor_set = _compile(tmp_path)
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_set.file:
        pool.Add(file)
    json_formats = descriptor_pb2.FeatureSet.JsonFormat
    seen = {"OPEN": 0, "CLOSED": 0, "ALLOW": 0, "LEGACY_BEST_EFFORT": 0}
    for file in descriptor_set.file:
        package = file_to_package(file)
        features = package.features
        assert set(features) == {m.name for m in package.messages} | {e.name for e in package.enums}
        for message in package.messages:
            runtime = pool.FindMessageTypeByName(f"{file.package}.{message.name}")
            expected = json_formats.Name(runtime._GetFeatures().json_format)
            assert features[message.name] == {"json_format": expected}, message.name
            seen[expected] += 1
        for enum in package.enums:
            runtime_enum = pool.FindEnumTypeByName(f"{file.package}.{enum.name}")
            openness = "CLOSED" if runtime_enum.is_closed else "OPEN"
            expected = json_formats.Name(runtime_enum._GetFeatures().json_format)
            assert features[enum.name] == {"enum_type": openness, "json_format": expected}, enum.name
            seen[openness] += 1
            seen[expected] += 1
    assert all(seen.values()), f"every value should occur at least once: {seen}"


def test_edition_defaults_follow_syntax_and_editions() -> None:
    proto2 = {"enum_type": "CLOSED", "json_format": "LEGACY_BEST_EFFORT"}
    assert edition_defaults(descriptor_pb2.EDITION_PROTO2) == proto2
    assert edition_defaults(descriptor_pb2.EDITION_PROTO3) == {"enum_type": "OPEN", "json_format": "ALLOW"}
    assert edition_defaults(descriptor_pb2.EDITION_2023) == {"enum_type": "OPEN", "json_format": "ALLOW"}
    # A descriptor from a tool that names no edition gets the oldest defaults rather than an error.
    assert edition_defaults(descriptor_pb2.EDITION_UNKNOWN) == edition_defaults(descriptor_pb2.EDITION_PROTO2)
