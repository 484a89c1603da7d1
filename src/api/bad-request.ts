/**
 * google.rpc.BadRequest, the standard error detail naming the request field at
 * fault, so that gRPC tooling (grpcurl, grpc-status-details) can show it.
 *
 * The googleapis protos are not a dependency of this project, so the two
 * messages are described here from a FileDescriptorProto. Only the fields used
 * are declared (FieldViolation also has reason = 3 and localized_message = 4);
 * the wire format is the same for readers that know all of them.
 */
import { create, type DescMessage } from "@bufbuild/protobuf";
import { createFileRegistry } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "google/rpc/error_details.proto",
    package: "google.rpc",
    syntax: "proto3",
    messageType: [
      {
        name: "BadRequest",
        field: [
          {
            name: "field_violations",
            jsonName: "fieldViolations",
            number: 1,
            label: FieldDescriptorProto_Label.REPEATED,
            type: FieldDescriptorProto_Type.MESSAGE,
            typeName: ".google.rpc.BadRequest.FieldViolation",
          },
        ],
        nestedType: [
          {
            name: "FieldViolation",
            field: [
              { name: "field", jsonName: "field", number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING },
              { name: "description", jsonName: "description", number: 2, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING },
            ],
          },
        ],
      },
    ],
  }),
  () => undefined,
);

function requireMessage(typeName: string): DescMessage {
  const desc = registry.getMessage(typeName);
  if (desc === undefined) throw new Error(`${typeName} missing from its own descriptor`);
  return desc;
}

/** Descriptor of google.rpc.BadRequest. */
export const BadRequestSchema: DescMessage = requireMessage("google.rpc.BadRequest");

/** A ConnectError detail: one field violation. */
export function badRequestDetail(field: string, description: string): { desc: DescMessage; value: Record<string, unknown> } {
  return { desc: BadRequestSchema, value: { fieldViolations: [{ field, description }] } };
}
