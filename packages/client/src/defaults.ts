/** The deadline of a call that sets none, for both clients (createSessionClient, createSessionGrpcClient). */
export const DEFAULT_TIMEOUT_MS = 5_000;
