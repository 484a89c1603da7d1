/**
 * The one module that imports connect's internal gRPC protocol helpers
 * (`@connectrpc/connect/protocol-grpc`), which do not follow semantic
 * versioning: package.json pins @connectrpc/connect exactly, and an upgrade
 * is checked here, in one place.
 */
export { findTrailerError, requestHeader, validateResponse } from "@connectrpc/connect/protocol-grpc";
