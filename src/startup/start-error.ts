/**
 * A start that cannot succeed for a reason outside the code: a TLS file that
 * cannot be read, a port already in use, a Redis that does not answer. The
 * message is one line naming the setting or address and the cause, so main.ts
 * prints it as it is (exit code 2) instead of a stack trace.
 */
export class StartError extends Error {
  override readonly name = "StartError";
}
