/**
 * pino's isoTime timestamp, made once per millisecond: under load many lines
 * (an RPC's log line and its audit record) share a millisecond, and each
 * would otherwise build a Date and format it. Same output as
 * pino.stdTimeFunctions.isoTime.
 */
let madeAt = Number.NaN;
let made = "";

export function isoTime(): string {
  const now = Date.now();
  if (now !== madeAt) {
    madeAt = now;
    made = `,"time":"${new Date(now).toISOString()}"`;
  }
  return made;
}
