/**
 * gRPC server reflection (grpc.reflection.v1 and grpc.reflection.v1alpha) on
 * Connect, so that grpcurl and other tools can list, describe and call the
 * services without .proto files. connect-es has no reflection package
 * (connectrpc/connect-es#507), so this implements the protocol described in
 * https://github.com/grpc/grpc/blob/master/doc/server-reflection.md with the
 * answers grpc-go gives:
 *
 * - list_services: every served service, the reflection services included.
 * - file_by_filename, file_containing_symbol, file_containing_extension: the
 *   file, then its transitive imports not yet sent on this stream.
 * - all_extension_numbers_of_type: the extension numbers of a message.
 * - Anything unknown: an error_response with NOT_FOUND, and the stream stays
 *   open for the next request.
 *
 * ServerReflectionInfo is a bidirectional stream, so it needs HTTP/2 (gRPC or
 * Connect over h2); every client that speaks reflection uses gRPC.
 *
 * v1alpha is wire-identical to v1 (same fields and numbers), so its messages
 * are converted to v1 through their binary form and answered by the same code.
 */
import { create, fromBinary, toBinary, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionRequestSchema as AlphaRequestSchema,
  ServerReflectionResponseSchema as AlphaResponseSchema,
  type ServerReflectionRequest as AlphaRequest,
  type ServerReflectionResponse as AlphaResponse,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { DescriptorIndex } from "./descriptor-index.js";

/** Both versions of the reflection service; they are served (and listed) together. */
export const REFLECTION_SERVICES: readonly DescService[] = [ServerReflectionV1, ServerReflectionV1alpha];

/**
 * Registers both reflection services, describing `services` and the
 * reflection services themselves. Pass every service the router serves.
 */
export function reflectionServiceRoutes(services: readonly DescService[]): (router: ConnectRouter) => void {
  const index = new DescriptorIndex([...services, ...REFLECTION_SERVICES]);
  return (router) => {
    router.service(ServerReflectionV1, {
      serverReflectionInfo: (requests) => answerAll(index, requests),
    });
    router.service(ServerReflectionV1alpha, {
      serverReflectionInfo: (requests) => answerAllAlpha(index, requests),
    });
  };
}

async function* answerAll(index: DescriptorIndex, requests: AsyncIterable<ServerReflectionRequest>): AsyncGenerator<ServerReflectionResponse> {
  /** Files already sent on this stream: their bytes are not repeated as dependencies. */
  const sent = new Set<string>();
  for await (const request of requests) {
    yield create(ServerReflectionResponseSchema, {
      validHost: request.host,
      originalRequest: request,
      messageResponse: answer(index, request, sent),
    });
  }
}

async function* answerAllAlpha(index: DescriptorIndex, requests: AsyncIterable<AlphaRequest>): AsyncGenerator<AlphaResponse> {
  for await (const response of answerAll(index, asV1(requests))) {
    yield fromBinary(AlphaResponseSchema, toBinary(ServerReflectionResponseSchema, response));
  }
}

async function* asV1(requests: AsyncIterable<AlphaRequest>): AsyncGenerator<ServerReflectionRequest> {
  for await (const request of requests) {
    yield fromBinary(ServerReflectionRequestSchema, toBinary(AlphaRequestSchema, request));
  }
}

type ResponseInit = NonNullable<MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]>;

function answer(index: DescriptorIndex, request: ServerReflectionRequest, sent: Set<string>): ResponseInit {
  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case "fileByFilename": {
      const file = index.file(req.value);
      if (file === undefined) return notFound(`file not found: ${req.value}`);
      return files(index.encodeWithDependencies(file, sent));
    }
    case "fileContainingSymbol": {
      const file = index.fileContainingSymbol(req.value);
      if (file === undefined) return notFound(`symbol not found: ${req.value}`);
      return files(index.encodeWithDependencies(file, sent));
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = req.value;
      const file = index.fileContainingExtension(containingType, extensionNumber);
      if (file === undefined) return notFound(`extension not found: ${containingType} ${extensionNumber}`);
      return files(index.encodeWithDependencies(file, sent));
    }
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbers(req.value);
      if (numbers === undefined) return notFound(`type not found: ${req.value}`);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: req.value, extensionNumber: numbers } };
    }
    case undefined:
      return { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "the request names no question" } };
  }
}

function files(fileDescriptorProto: Uint8Array[]): ResponseInit {
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto } };
}

function notFound(errorMessage: string): ResponseInit {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage } };
}
