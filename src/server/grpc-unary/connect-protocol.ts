/**
 * The one place that uses @connectrpc/connect's protocol subpaths, which do
 * not follow semantic versioning: package.json pins @connectrpc/connect
 * exactly for them. The fast gRPC unary path (unary-handler.ts) takes the
 * protocol rules from connect itself (timeout header grammar, compression
 * negotiation, the grpc-status-details-bin encoding), so it answers exactly
 * as connect's own gRPC handler would.
 */
export { compressionNegotiate, type Compression } from "@connectrpc/connect/protocol";
export { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
