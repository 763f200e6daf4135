"""The v1 wire contract: generated code is current, imports cleanly, and follows the house rules.

Rules checked here (docs/contributing.md, "Wire contract"): a dedicated ``<Rpc>Request``/``<Rpc>Response`` per RPC;
enum value 0 is ``<ENUM>_UNSPECIFIED``; the proto ``ErrorReason`` mirrors ``genogate.errors.Reason``; every
element of the contract carries a comment.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor, descriptor_pb2

from genogate.errors import Reason

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = ("common", "node", "coordinator")
WIRE_MODULES = [f"genogate.wire.v1.{name}{kind}" for name in PROTO_FILES for kind in ("_pb2", "_pb2_grpc")]
SERVICES = {"node": "NodeService", "coordinator": "CoordinatorService"}


def _pb2(name: str) -> ModuleType:
    return importlib.import_module(f"genogate.wire.v1.{name}_pb2")


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def _all_enums() -> Iterator[descriptor.EnumDescriptor]:
    def nested(message: descriptor.Descriptor) -> Iterator[descriptor.EnumDescriptor]:
        yield from message.enum_types
        for inner in message.nested_types:
            yield from nested(inner)

    for name in PROTO_FILES:
        file = _pb2(name).DESCRIPTOR
        yield from file.enum_types_by_name.values()
        for message in file.message_types_by_name.values():
            yield from nested(message)


def _services() -> list[descriptor.ServiceDescriptor]:
    return [_pb2(file).DESCRIPTOR.services_by_name[name] for file, name in SERVICES.items()]


def test_generated_code_matches_protos() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "protogen.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("module", WIRE_MODULES)
def test_generated_module_imports_cleanly(module: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__name__ == module
    stub = Path(imported.__file__ or "").with_suffix(".pyi")
    assert stub.is_file(), f"missing type stub {stub.name}"


def test_generated_modules_import_each_other_by_package_path() -> None:
    for name in ("node", "coordinator"):
        assert _pb2(name).DESCRIPTOR.dependencies[0] is _pb2("common").DESCRIPTOR


def test_error_reason_mirrors_python_enum() -> None:
    proto = {
        value.name.removeprefix("ERROR_REASON_"): value.number for value in _pb2("common").ErrorReason.DESCRIPTOR.values
    }
    python = {member.name: member.value for member in Reason}
    assert proto == python


def test_services_have_stable_wire_names() -> None:
    assert [s.full_name for s in _services()] == ["genogate.v1.NodeService", "genogate.v1.CoordinatorService"]


def test_every_rpc_has_dedicated_request_and_response() -> None:
    seen: dict[str, str] = {}
    for service in _services():
        assert service.methods, f"{service.full_name} has no RPCs"
        for method in service.methods:
            where = f"{service.name}.{method.name}"
            assert method.input_type.name == f"{method.name}Request", where
            assert method.output_type.name == f"{method.name}Response", where
            assert method.input_type.containing_type is None, where
            for message in (method.input_type, method.output_type):
                first = seen.setdefault(message.full_name, where)
                assert first == where, f"{message.full_name} is used by {first} and {where}"


def test_every_rpc_is_unary() -> None:
    # Streaming RPCs would need their own deadline, retry and audit semantics; v1 has none.
    for service in _services():
        for method in service.methods:
            assert not method.client_streaming and not method.server_streaming, method.full_name


def test_enum_zero_is_unspecified_and_values_are_prefixed() -> None:
    enums = list(_all_enums())
    assert len(enums) >= 5
    for enum in enums:
        prefix = _upper_snake(enum.name)
        assert enum.values_by_number[0].name == f"{prefix}_UNSPECIFIED", enum.full_name
        for value in enum.values:
            assert value.name.startswith(f"{prefix}_"), value.name


@pytest.mark.parametrize("message", ["Query", "QueryResult", "CombinedResult"])
def test_kind_oneof_numbers_equal_query_kind(message: str) -> None:
    common = _pb2("common")
    kinds = {v.number for v in common.QueryKind.DESCRIPTOR.values if v.number != 0}
    oneof = getattr(common, message).DESCRIPTOR.oneofs_by_name["kind"]
    assert {field.number for field in oneof.fields} == kinds


def _documented_descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contract.pb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *(f"genogate/v1/{name}.proto" for name in PROTO_FILES),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_every_element_is_commented(tmp_path: Path) -> None:
    # Field numbers of the descriptor.proto messages, as used in SourceCodeInfo paths.
    file_message, file_enum, file_service = 4, 5, 6
    msg_field, msg_nested, msg_enum, msg_oneof = 2, 3, 4, 8
    enum_value, service_method = 2, 2

    missing: list[str] = []
    for file in _documented_descriptor_set(tmp_path).file:
        commented = {tuple(loc.path) for loc in file.source_code_info.location if loc.leading_comments.strip()}

        def need(
            path: tuple[int, ...], name: str, file_name: str = file.name, commented: set[tuple[int, ...]] = commented
        ) -> None:
            if path not in commented:
                missing.append(f"{file_name}: {name}")

        def walk_enum(enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], scope: str) -> None:
            need(path, f"{scope}{enum.name}")
            for i, value in enumerate(enum.value):
                need((*path, enum_value, i), f"{scope}{enum.name}.{value.name}")

        def walk_message(message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str) -> None:
            name = f"{scope}{message.name}"
            need(path, name)
            for i, field in enumerate(message.field):
                need((*path, msg_field, i), f"{name}.{field.name}")
            for i, oneof in enumerate(message.oneof_decl):
                if not oneof.name.startswith("_"):  # synthetic oneofs of proto3 `optional`
                    need((*path, msg_oneof, i), f"{name}.{oneof.name} (oneof)")
            for i, inner in enumerate(message.nested_type):
                walk_message(inner, (*path, msg_nested, i), f"{name}.")
            for i, enum in enumerate(message.enum_type):
                walk_enum(enum, (*path, msg_enum, i), f"{name}.")

        for i, message in enumerate(file.message_type):
            walk_message(message, (file_message, i), "")
        for i, enum in enumerate(file.enum_type):
            walk_enum(enum, (file_enum, i), "")
        for i, service in enumerate(file.service):
            need((file_service, i), service.name)
            for j, method in enumerate(service.method):
                need((file_service, i, service_method, j), f"{service.name}.{method.name}")
    assert not missing, "undocumented:\n" + "\n".join(missing)
