"""Google's protobuf runtime on the kubelet pod-resources messages, for
tests/kubelet_proto.rs: an encoder and a decoder from outside the project.

protoc (the one grpcio-tools ships) compiles proto/podresources/v1/api.proto
into Python classes; a message is then built from JSON (protobuf's JSON
mapping, field names as in the .proto) and serialized, or parsed from bytes
and written back as JSON.

    google_protobuf.py PROTO_ROOT WORK_DIR encode MESSAGE JSON_IN BYTES_OUT
    google_protobuf.py PROTO_ROOT WORK_DIR decode MESSAGE BYTES_IN JSON_OUT
"""

import importlib
import json
import sys

from google.protobuf import json_format
from grpc_tools import protoc


def main():
    proto_root, work_dir, mode, message, source, target = sys.argv[1:7]
    status = protoc.main(
        ["protoc", f"-I{proto_root}", f"--python_out={work_dir}", "podresources/v1/api.proto"]
    )
    if status != 0:
        sys.exit(f"protoc could not compile {proto_root}/podresources/v1/api.proto (status {status})")
    sys.path.insert(0, work_dir)
    api = importlib.import_module("podresources.v1.api_pb2")
    cls = getattr(api, message)
    if mode == "encode":
        with open(source) as f:
            built = json_format.ParseDict(json.load(f), cls())
        with open(target, "wb") as f:
            f.write(built.SerializeToString())
    elif mode == "decode":
        parsed = cls()
        with open(source, "rb") as f:
            parsed.ParseFromString(f.read())
        with open(target, "w") as f:
            json.dump(json_format.MessageToDict(parsed, preserving_proto_field_name=True), f)
    else:
        sys.exit(f"unknown mode {mode!r}: encode or decode")


if __name__ == "__main__":
    main()
