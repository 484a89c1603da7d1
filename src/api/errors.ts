/**
 * The one place where domain errors become gRPC status codes.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { isSessionError, type SessionError, type SessionErrorKind } from "../domain/errors.js";
import { badRequestDetail } from "./bad-request.js";

const CODES: Readonly<Record<SessionErrorKind, Code>> = {
  not_found: Code.NotFound,
  ended: Code.FailedPrecondition,
  version_mismatch: Code.Aborted,
  permission_denied: Code.PermissionDenied,
  limit_exceeded: Code.ResourceExhausted,
  invalid_argument: Code.InvalidArgument,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  outcome_unknown: Code.Unknown,
  out_of_range: Code.OutOfRange,
  internal: Code.Internal,
};

/**
 * Converts anything a handler caught into the ConnectError sent to the client.
 *
 * SessionError messages are written by this service to name fields, keys and
 * versions, never metadata or data values, so they are sent as they are
 * (except "ended", whose wording is fixed so that it always says closed or
 * expired whichever store raised it). Any other error is a fault of ours: the
 * client gets a generic INTERNAL and the log gets the error's name and stack
 * frames, but not its message, which could quote a value.
 */
export function toConnectError(error: unknown, logger: Logger, procedure: string): ConnectError {
  if (error instanceof ConnectError) return error;
  if (isSessionError(error)) return fromSessionError(error);
  logger.error({ procedure, errName: errorName(error), stack: stackFrames(error) }, "internal error");
  return new ConnectError("internal error", Code.Internal);
}

function fromSessionError(error: SessionError): ConnectError {
  const code = CODES[error.kind];
  switch (error.kind) {
    case "ended":
      return new ConnectError("session has ended: it was closed or it expired", code);
    case "invalid_argument":
      return new ConnectError(
        error.message,
        code,
        undefined,
        error.field === undefined ? undefined : [badRequestDetail(error.field, error.message)],
      );
    default:
      return new ConnectError(error.message, code);
  }
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}

/** The stack without its first line, which repeats the message. */
function stackFrames(error: unknown): string | undefined {
  if (!(error instanceof Error) || error.stack === undefined) return undefined;
  return error.stack
    .split("\n")
    .filter((line) => line.trimStart().startsWith("at "))
    .join("\n");
}
